"""Config plumbing shared by every YAML the project reads (train configs, search spaces, studies).

YAML is parsed once, at the edge, into pydantic models that forbid unknown keys; every error names
the file and the dotted key. Below this module no code handles raw config dicts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class ConfigError(ValueError):
    """A config, search space or study file (or a --set override) that cannot be used."""


class StrictModel(BaseModel):
    """Base of every config object: unknown keys are errors, assignments are validated too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


M = TypeVar("M", bound=BaseModel)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with safe_load; a missing file or bad YAML is a ConfigError naming it."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def format_validation_error(err: ValidationError, source: str, prefix: str = "") -> str:
    lines = []
    for e in err.errors():
        # pydantic puts union-member and validator names into loc; keep only the real keys
        parts = ([prefix] if prefix else []) + [str(p) for p in e["loc"] if not str(p).startswith("function-")]
        loc = ".".join(parts)
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{source}: {loc or '<top>'}: {msg}")
    return "\n".join(lines)


def parse(cls: type[M], data: dict[str, Any], source: str, prefix: str = "") -> M:
    """Validate `data` into `cls`; errors become one ConfigError naming `source` and each key
    (keys under `prefix` when `data` is a section of a larger file)."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source, prefix)) from None


def parse_value(text: str) -> Any:
    """A --set / key=value right-hand side: YAML scalars and flow collections ('0.1', '[1, 2]')."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def set_dotted(data: dict[str, Any], key: str, value: Any, source: str = "override") -> None:
    """Set data['a']['b'] for key 'a.b', creating intermediate mappings."""
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"{source}: bad key {key!r}")
    node = data
    for p in parts[:-1]:
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        elif not isinstance(nxt, dict):
            raise ConfigError(f"{source}: {key}: {p!r} is a value, not a section")
        node = nxt
    node[parts[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: list[str], source: str = "--set") -> dict[str, Any]:
    """Apply 'a.b=value' strings in order to a raw mapping (before validation)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{source}: expected key=value, got {item!r}")
        key, raw = item.split("=", 1)
        set_dotted(data, key.strip(), parse_value(raw), source=f"{source} {item!r}")
    return data


def get_dotted(obj: Any, key: str) -> Any:
    for p in key.split("."):
        obj = obj[p] if isinstance(obj, dict) else getattr(obj, p)
    return obj
