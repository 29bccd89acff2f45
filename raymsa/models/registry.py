"""Models by short registered names, each with a tiny variant for tests (the timm habit)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from raymsa.config import ConfigError, parse
from raymsa.models.base import DataSpec, ModelConfig, MSAModel


@dataclass(frozen=True)
class Entry:
    name: str
    model_cls: type[MSAModel]
    config_cls: type[ModelConfig]
    tiny: dict[str, Any]  # overrides that make the test-sized variant


_REGISTRY: dict[str, Entry] = {}


def register(name: str, config_cls: type[ModelConfig], tiny: dict[str, Any]):
    def deco(model_cls: type[MSAModel]) -> type[MSAModel]:
        if name in _REGISTRY:
            raise RuntimeError(f"model {name!r} registered twice")
        model_cls.config_cls = config_cls
        _REGISTRY[name] = Entry(name, model_cls, config_cls, dict(tiny))
        return model_cls

    return deco


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_entry(name: str, source: str = "model") -> Entry:
    if name not in _REGISTRY:
        raise ConfigError(f"{source}: unknown model {name!r}; registered models: {', '.join(list_models())}")
    return _REGISTRY[name]


def model_config(data: dict[str, Any] | ModelConfig, source: str = "model", tiny: bool = False,
                 prefix: str = "") -> ModelConfig:
    """Validate a raw model section ({'name': ..., fields...}) into that model's config class.

    `variant: tiny` in the section (or tiny=True) applies the registered tiny overrides under the
    fields given explicitly.
    """
    if isinstance(data, ModelConfig):
        return data
    if not isinstance(data, dict) or "name" not in data:
        where = f"{prefix}.name" if prefix else "name"
        raise ConfigError(f"{source}: {where}: a model section needs a 'name' ({', '.join(list_models())})")
    entry = get_entry(data["name"], f"{source}: {prefix}.name" if prefix else source)
    if tiny:
        data = {**data, "variant": "tiny"}
    merged = {**entry.tiny, **data} if data.get("variant") == "tiny" else dict(data)
    return parse(entry.config_cls, merged, source, prefix)


def build_model(name: str, config: ModelConfig | dict[str, Any] | None = None, *, spec: DataSpec,
                tiny: bool = False) -> MSAModel:
    """build_model('fsrf', spec=DataSpec(...)) or with a config object / raw dict of fields."""
    entry = get_entry(name)
    if config is None:
        config = {}
    if isinstance(config, dict):
        config = model_config({**config, "name": name}, source=f"model {name}", tiny=tiny)
    if config.name != name:
        raise ConfigError(f"model config names {config.name!r} but build_model was asked for {name!r}")
    return entry.model_cls(config, spec)
