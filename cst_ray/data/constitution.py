"""System prompts and the constitution (critique/revision request pairs)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from cst_ray.core.errors import ConfigError


@dataclass(frozen=True)
class Principle:
    name: str
    critique: str
    revision: str


def load_constitution(path: str = "") -> list[Principle]:
    """Load principles from a YAML file (`principles: [{name, critique, revision}]`).

    An empty path loads the constitution packaged with cst-ray.
    """
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError("constitution file not found", key="generation.critique.constitution", file=path)
        text, where = p.read_text(), path
    else:
        text = resources.files("cst_ray.resources").joinpath("constitution.yaml").read_text()
        where = "cst_ray/resources/constitution.yaml"
    data = yaml.safe_load(text) or {}
    items = data.get("principles") if isinstance(data, dict) else None
    if not items:
        raise ConfigError("no `principles` list", file=where)
    out = []
    for i, item in enumerate(items, start=1):
        for fld in ("critique", "revision"):
            if not isinstance(item, dict) or not isinstance(item.get(fld), str) or not item[fld].strip():
                raise ConfigError(f"principle {i} needs a non-empty string `{fld}`", file=where, key=f"principles[{i}].{fld}")
        out.append(Principle(name=str(item.get("name", f"p{i}")), critique=item["critique"].strip(), revision=item["revision"].strip()))
    return out
