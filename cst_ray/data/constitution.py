"""System prompts and the constitution (critique/revision request pairs)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from cst_ray.config.load import read_yaml_mapping
from cst_ray.core.errors import ConfigError

CONSTITUTION_KEY = "generation.critique.constitution"


@dataclass(frozen=True)
class Principle:
    name: str
    critique: str
    revision: str


def load_constitution(path: str = "") -> list[Principle]:
    """Load principles from a YAML file (`principles: [{name, critique, revision}]`).

    An empty path loads the constitution packaged with cst-ray. A file that is missing, not
    UTF-8 YAML, or without a non-empty `principles` list of complete entries is a ConfigError
    naming the file and the entry.
    """
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError("constitution file not found" if not p.exists() else "expected a file, got a directory",
                              key=CONSTITUTION_KEY, file=path)
        data, where = read_yaml_mapping(p, key=CONSTITUTION_KEY), path
    else:
        text = resources.files("cst_ray.resources").joinpath("constitution.yaml").read_text()
        data, where = yaml.safe_load(text) or {}, "cst_ray/resources/constitution.yaml"
    items = data.get("principles")
    if not isinstance(items, list) or not items:
        raise ConfigError("needs a non-empty `principles` list of {name, critique, revision}", file=where,
                          key="principles")
    return [_principle(i, item, where) for i, item in enumerate(items, start=1)]


def _principle(i: int, item, where: str) -> Principle:
    for fld in ("critique", "revision"):
        if not isinstance(item, dict) or not isinstance(item.get(fld), str) or not item[fld].strip():
            raise ConfigError(f"principle {i} needs a non-empty string `{fld}`", file=where, key=f"principles[{i}].{fld}")
    return Principle(name=str(item.get("name", f"p{i}")), critique=item["critique"].strip(),
                     revision=item["revision"].strip())
