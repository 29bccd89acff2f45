"""Models by short registered names; importing this package registers them all."""

from raymsa.models.base import DataSpec, ModelConfig, MSAModel, Stage
from raymsa.models.registry import build_model, get_entry, list_models, model_config, register

# Each import registers its model.
from raymsa.models import late_fusion  # noqa: F401,E402
from raymsa.models import fsrf  # noqa: F401,E402
from raymsa.models import senti_ifusion  # noqa: F401,E402
from raymsa.models import lnln  # noqa: F401,E402
from raymsa.models import mult  # noqa: F401,E402

__all__ = ["DataSpec", "ModelConfig", "MSAModel", "Stage", "build_model", "get_entry", "list_models",
           "model_config", "register"]
