"""MMSA feature data: safe loading of the field's pickles, the embedded synthetic default, checks."""

from raymsa.data.types import SPLITS, DataError, MMSAData, Split

__all__ = ["SPLITS", "DataError", "MMSAData", "Split"]
