"""raymsa: robustness and hyperparameter studies for incomplete multimodal sentiment analysis.

Stages, each a subpackage: data -> missing -> models -> train -> search -> study -> report.
"""

__version__ = "0.1.0"
