"""The bad-input corpus: files a user hands cst-ray, each with its expected outcome.

Every case builds its file or folder in a fresh folder (`make(path)`), runs the CLI with
`args` ({f} = that path, {tmp} = the folder) and expects one of two outcomes:

  * error: exit status 2 and exactly one stderr line, no traceback, naming everything in
    `expect` (the file, and the row and field, or the config key);
  * skip: exit status 0 from `cst-ray check`, whose JSON counts `skip` = (reason, count) in
    a `skipped` table: the row is left out, counted, and the reason recorded.

The error cases run through a stage command (generate, pairs, evaluate, judge, ...) and stop
in the checks before Ray starts, so the whole corpus runs in seconds per case.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TINY = ("--config", "configs/tiny.yaml", "run_dir={tmp}/run")
PROMPTS = ("generate", *TINY, "data.source={f}")
PAIRS = ("pairs", *TINY, "pairs.use_generated=false", "pairs.extra_tasks=[{f}]")
CHECK_PROMPTS = ("check", *TINY, "data.source={f}")
CHECK_PAIRS = ("check", *TINY, "pairs.extra_tasks=[{f}]")
CONFIG = ("generate", "--config", "{f}", "run_dir={tmp}/run")
MODEL = ("generate", *TINY, "model.name_or_path={f}")
CONSTITUTION = ("generate", *TINY, "generation.critique.constitution={f}")
JUDGE = ("evaluate", *TINY, "eval.judge=classifier", "eval.judge_path={f}")
FINETUNED = ("evaluate", *TINY, "eval.judge=finetuned", "eval.judge_path={f}")
JUDGE_INPUT = ("judge", "--judge", "refusal", "--input", "{f}", "--output", "{tmp}/out.jsonl")


@dataclass(frozen=True)
class Case:
    name: str
    target: str  # the file or folder name the case builds
    make: Callable[[Path], None]
    args: tuple[str, ...]
    expect: tuple[str, ...] = ()  # error: what the one stderr line names
    skip: tuple[str, int] | None = None  # counted skip: (reason, count)
    as_root: bool = True  # False: root may write anywhere, so the case cannot fail for root


# ----------------------------------------------------------------------------- writers


def text(s: str) -> Callable[[Path], None]:
    return lambda p: p.write_text(s, encoding="utf-8")


def raw(b: bytes) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(b)


def jsonl(*rows) -> Callable[[Path], None]:
    return text("".join(json.dumps(r) + "\n" for r in rows))


def json_file(obj) -> Callable[[Path], None]:
    return text(json.dumps(obj))


def parquet(rows: list[dict], schema: pa.Schema | None = None, keep: float = 1.0) -> Callable[[Path], None]:
    """A Parquet file; `keep` < 1 cuts it to that share of its bytes (a truncated download)."""

    def make(p: Path) -> None:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), p)
        if keep < 1.0:
            data = p.read_bytes()
            p.write_bytes(data[: int(len(data) * keep)])

    return make


def junk(n: int = 4096, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def mkdir_then(make: Callable[[Path], None]) -> Callable[[Path], None]:
    def run(p: Path) -> None:
        p.mkdir()
        make(p)

    return run


def model_folder(drop: tuple[str, ...] = (), config: str = '{"model_type": "llama"}', template: bool = True):
    """A model folder as cst-ray checks it (config.json, weights, tokenizer, chat template);
    the weights are a placeholder, as the checks only look at which files are there."""

    def make(p: Path) -> None:
        files = {"config.json": config, "model.safetensors": "", "tokenizer.json": "{}",
                 "tokenizer_config.json": json.dumps({"eos_token": "</s>"})}
        if template:
            files["chat_template.jinja"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
        for name, body in files.items():
            if name not in drop:
                (p / name).write_text(body)

    return mkdir_then(make)


def judge_folder(kind: str, drop: tuple[str, ...] = (), card: str = '{"recipe": {"max_length": 256}}'):
    def make(p: Path) -> None:
        names = {"judge.json": card, "judge.safetensors" if kind == "classifier" else "model.safetensors": ""}
        if kind == "finetuned":
            names["config.json"] = '{"model_type": "bert"}'
        for name, body in names.items():
            if name not in drop:
                (p / name).write_text(body)

    return mkdir_then(make)


def read_only_folder(p: Path) -> None:
    p.mkdir()
    os.chmod(p, 0o500)


PAIR = {"system": "s1", "prompt": "x", "chosen": "no", "rejected": "yes"}
CONSTITUTION_OK = "principles:\n  - name: a\n    critique: Is it harmful\n    revision: Rewrite it safely\n"
# ----------------------------------------------------------------------------- the corpus

CASES: list[Case] = [
    # prompt files: JSONL
    Case("jsonl invalid utf-8", "p.jsonl", raw(b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n'), PROMPTS,
         ("{f}", "row 2", "UTF-8")),
    Case("jsonl random binary", "p.jsonl", raw(junk()), PROMPTS, ("{f}", "row ", "UTF-8")),
    Case("jsonl utf-8 binary noise", "p.jsonl", raw(b"\x00\x01\x02garbage\x7f\n"), PROMPTS,
         ("{f}", "row 1", "invalid JSON")),
    Case("jsonl invalid json line", "p.jsonl", text('{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": \n'), PROMPTS,
         ("{f}", "row 3", "invalid JSON")),
    Case("jsonl row is a list", "p.jsonl", text('{"prompt": "a"}\n["b"]\n'), PROMPTS, ("{f}", "row 2", "object")),
    Case("jsonl missing prompt field", "p.jsonl", jsonl({"prompt": "a"}, {"text": "b"}), PROMPTS,
         ("{f}", "row 2", "field 'prompt'")),
    Case("jsonl prompt is a number", "p.jsonl", jsonl({"prompt": 7}), PROMPTS, ("{f}", "row 1", "field 'prompt'")),
    Case("jsonl prompt is null", "p.jsonl", jsonl({"prompt": "a"}, {"prompt": None}), PROMPTS,
         ("{f}", "row 2", "field 'prompt'", "null")),
    Case("jsonl only blank lines", "p.jsonl", text("\n \n\n"), PROMPTS, ("{f}", "no rows")),
    Case("jsonl all prompts blank", "p.jsonl", jsonl({"prompt": " "}, {"prompt": ""}), PROMPTS,
         ("{f}", "no usable prompts", "blank_prompt")),
    Case("jsonl same id, different prompts", "p.jsonl", jsonl({"id": "a", "prompt": "x"}, {"id": "b", "prompt": "y"},
                                                              {"id": "a", "prompt": "z"}),
         (*PROMPTS, "data.id_field=id"), ("{f}", "row 1", "row 3", "field 'id'")),
    Case("jsonl missing id", "p.jsonl", jsonl({"id": "a", "prompt": "x"}, {"prompt": "y"}),
         (*PROMPTS, "data.id_field=id"), ("{f}", "row 2", "field 'id'")),
    Case("empty file", "p.jsonl", text(""), PROMPTS, ("{f}", "empty")),
    Case("prompt file not found", "nowhere.jsonl", lambda p: None, PROMPTS, ("{f}", "not found")),
    Case("prompt source is a folder", "prompts.jsonl", lambda p: p.mkdir(), PROMPTS, ("{f}", "directory")),
    Case("unsupported suffix", "p.txt", text("How do I pick a lock?\n"), PROMPTS, ("{f}", "unsupported file type")),
    # prompt files: JSON
    Case("json invalid utf-8", "p.json", raw(b'[{"prompt": "\xff\xfe"}]'), PROMPTS, ("{f}", "UTF-8", "line 1")),
    Case("json truncated", "p.json", text('[{"prompt": "a"},\n{"prompt": "b"'), PROMPTS,
         ("{f}", "invalid JSON", "line 2")),
    Case("json object at top level", "p.json", json_file({"prompt": "a"}), PROMPTS, ("{f}", "top level")),
    Case("json empty list", "p.json", json_file([]), PROMPTS, ("{f}", "no rows")),
    Case("json list of strings", "p.json", json_file(["a", "b"]), PROMPTS, ("{f}", "row 1", "object")),
    Case("json scalar", "p.json", json_file(42), PROMPTS, ("{f}", "top level")),
    # prompt files: CSV
    Case("csv invalid utf-8", "p.csv", raw(b"prompt\nok\nbad \xe9\n"), PROMPTS, ("{f}", "row 2", "UTF-8")),
    Case("csv missing prompt column", "p.csv", text("question\nHow?\n"), PROMPTS, ("{f}", "row 1", "field 'prompt'")),
    Case("csv short row", "p.csv", text("id,prompt\n1,ok\n2\n"), PROMPTS, ("{f}", "row 2", "field 'prompt'", "null")),
    Case("csv quote left open", "p.csv", text('prompt\nok\n"never closed\nmore\n'), PROMPTS, ("{f}", "row 2", "CSV")),
    Case("csv header only", "p.csv", text("prompt\n"), PROMPTS, ("{f}", "no rows")),
    # prompt files: Parquet
    Case("parquet truncated", "p.parquet", parquet([{"prompt": f"q{i}"} for i in range(50)], keep=0.5), PROMPTS,
         ("{f}", "Parquet")),
    Case("parquet random binary", "p.parquet", raw(junk(seed=1)), PROMPTS, ("{f}", "Parquet")),
    Case("parquet prompt column of ints", "p.parquet", parquet([{"prompt": 1}]), PROMPTS,
         ("{f}", "row 1", "field 'prompt'")),
    Case("parquet missing prompt column", "p.parquet", parquet([{"text": "a"}]), PROMPTS,
         ("{f}", "row 1", "field 'prompt'")),
    Case("parquet zero rows", "p.parquet", parquet([], schema=pa.schema([("prompt", pa.string())])), PROMPTS,
         ("{f}", "no rows")),
    # prompt files: counted skips
    Case("blank prompt", "p.jsonl", jsonl({"prompt": "a"}, {"prompt": "  "}), CHECK_PROMPTS, skip=("blank_prompt", 1)),
    Case("repeated prompt", "p.csv", text("prompt\na\nb\na\n"), CHECK_PROMPTS, skip=("duplicate", 1)),
    Case("same id, same prompt", "p.jsonl", jsonl({"id": 1, "prompt": "a"}, {"id": 1, "prompt": "a"}),
         (*CHECK_PROMPTS, "data.id_field=id"), skip=("duplicate", 1)),
    Case("prompt too long for max_model_len", "p.parquet", parquet([{"prompt": "a"}, {"prompt": "word " * 1000}]),
         CHECK_PROMPTS, skip=("prompt_too_long", 1)),
    # pair files
    Case("pairs invalid utf-8", "pairs.jsonl", raw(json.dumps(PAIR).encode() + b'\n{"system": "\xff"}\n'), PAIRS,
         ("{f}", "row 2", "UTF-8")),
    Case("pairs object at top level", "pairs.json", json_file(PAIR), PAIRS, ("{f}", "top level")),
    Case("pairs empty list", "pairs.json", json_file([]), PAIRS, ("{f}", "no rows")),
    Case("pairs {data: []}", "pairs.json", json_file({"data": []}), PAIRS, ("{f}", "no rows")),
    Case("pairs missing chosen", "pairs.jsonl", jsonl(PAIR, {k: v for k, v in PAIR.items() if k != "chosen"}), PAIRS,
         ("{f}", "row 2", "field 'chosen'")),
    Case("pairs rejected is a list", "pairs.jsonl", jsonl({**PAIR, "rejected": ["a"]}), PAIRS,
         ("{f}", "row 1", "field 'rejected'")),
    Case("pairs all chosen == rejected", "pairs.jsonl", jsonl({**PAIR, "chosen": "a", "rejected": "a"}), PAIRS,
         ("{f}", "no usable pairs", "chosen_equals_rejected")),
    Case("pairs file not found", "none.jsonl", lambda p: None, PAIRS,
         ("key pairs.extra_tasks", "{f}", "pair file not found")),
    Case("pairs missing at a path shaped like a hub id", "x", lambda p: None,
         ("pairs", *TINY, "pairs.use_generated=false", "pairs.extra_tasks=[nodir/pairs.jsonl]"),
         ("key pairs.extra_tasks", "nodir/pairs.jsonl", "pair file not found")),
    Case("pairs parquet truncated", "pairs.parquet", parquet([PAIR] * 40, keep=0.4), PAIRS, ("{f}", "Parquet")),
    Case("pairs csv missing rejected column", "pairs.csv", text("system,prompt,chosen\ns,x,no\n"), PAIRS,
         ("{f}", "row 1", "field 'rejected'")),
    Case("pair with an empty side", "pairs.jsonl", jsonl(PAIR, {**PAIR, "chosen": " "}), CHECK_PAIRS,
         skip=("empty_field", 1)),
    Case("pair chosen == rejected", "pairs.jsonl", jsonl(PAIR, {**PAIR, "rejected": "no"}), CHECK_PAIRS,
         skip=("chosen_equals_rejected", 1)),
    Case("pair of a task not selected", "pairs.jsonl", jsonl({**PAIR, "task": "harmless"}, {**PAIR, "task": "persona"}),
         (*CHECK_PAIRS, "pairs.extra_tasks_select=[harmless]"), skip=("task_not_selected:persona", 1)),
    # configs
    Case("config invalid utf-8", "c.yaml", raw(b"train:\n  lr: 1.0e-5 # caf\xe9\n"), CONFIG, ("{f}", "UTF-8", "line 2")),
    Case("config yaml syntax", "c.yaml", text("train:\n  lr: [1e-5\n"), CONFIG, ("{f}", "invalid YAML", "line")),
    Case("config top level list", "c.yaml", text("- train\n"), CONFIG, ("{f}", "top level")),
    Case("config unknown key", "c.yaml", text("train:\n  learning_rate: 1e-5\n"), CONFIG,
         ("{f}", "key train.learning_rate")),
    Case("config lr wrong type", "c.yaml", text("train:\n  lr: fast\n"), CONFIG, ("{f}", "key train.lr")),
    Case("config lr 0", "c.yaml", text("train:\n  lr: 0\n"), CONFIG, ("{f}", "key train.lr", "> 0")),
    Case("config lr negative", "c.yaml", text("train:\n  lr: -1.0e-5\n"), CONFIG, ("{f}", "key train.lr")),
    Case("config micro_batch_size 0", "c.yaml", text("train:\n  micro_batch_size: 0\n"), CONFIG,
         ("{f}", "key train.micro_batch_size")),
    Case("config epochs 0", "c.yaml", text("train:\n  epochs: 0\n"), CONFIG, ("{f}", "key train.epochs")),
    Case("config grad_accum 0", "c.yaml", text("train:\n  grad_accum: 0\n"), CONFIG, ("{f}", "key train.grad_accum")),
    Case("config s0 == s1", "c.yaml", text("prompts:\n  s0: Be safe.\n  s1: Be safe.\n"), CONFIG,
         ("{f}", "key prompts.s0")),
    Case("config max_model_len below max_new_tokens", "c.yaml",
         text("generation:\n  engine:\n    max_model_len: 64\n    max_new_tokens: 128\n"), CONFIG,
         ("{f}", "key generation.engine.max_model_len")),
    Case("config no pairs at all", "c.yaml", text("pairs:\n  use_generated: false\n"), CONFIG,
         ("{f}", "key pairs.extra_tasks")),
    # issue 25: validation gaps, each a clear error before any work
    Case("config eval_fraction 0", "c.yaml", text("data:\n  eval_fraction: 0\n"), CONFIG,
         ("{f}", "key data.eval_fraction", "> 0")),
    Case("config y0_template with other braces", "c.yaml",
         text("generation:\n  critique:\n    y0_template: 'JSON {\"a\":1} {prompt}'\n"), CONFIG,
         ("{f}", "key generation.critique.y0_template", "doubled")),
    Case("config beta inf", "c.yaml", text("train:\n  beta: .inf\n"), CONFIG, ("{f}", "key train.beta", "finite")),
    Case("config nll_weight nan", "c.yaml", text("train:\n  nll_weight: .nan\n"), CONFIG,
         ("{f}", "key train.nll_weight", "finite")),
    Case("config max_failures -1", "c.yaml", text("train:\n  max_failures: -1\n"), CONFIG,
         ("{f}", "key train.max_failures", "bounded")),
    Case("config temperature negative", "c.yaml", text("generation:\n  engine:\n    temperature: -0.5\n"), CONFIG,
         ("{f}", "key generation.engine.temperature")),
    Case("config top_p 0", "c.yaml", text("generation:\n  engine:\n    top_p: 0\n"), CONFIG,
         ("{f}", "key generation.engine.top_p")),
    Case("config gpu_memory_utilization 1.5", "c.yaml",
         text("generation:\n  engine:\n    gpu_memory_utilization: 1.5\n"), CONFIG,
         ("{f}", "key generation.engine.gpu_memory_utilization")),
    Case("config lora r 0", "c.yaml", text("train:\n  lora:\n    r: 0\n"), CONFIG, ("{f}", "key train.lora.r")),
    Case("config keep_checkpoints 0", "c.yaml", text("train:\n  keep_checkpoints: 0\n"), CONFIG,
         ("{f}", "key train.keep_checkpoints")),
    Case("config max_grad_norm negative", "c.yaml", text("train:\n  max_grad_norm: -1\n"), CONFIG,
         ("{f}", "key train.max_grad_norm")),
    Case("config weight_decay negative", "c.yaml", text("train:\n  weight_decay: -0.1\n"), CONFIG,
         ("{f}", "key train.weight_decay")),
    Case("config engine dtype fp8", "c.yaml", text("generation:\n  engine:\n    dtype: fp8\n"), CONFIG,
         ("{f}", "key generation.engine.dtype")),
    Case("config eval benign_limit negative", "c.yaml", text("eval:\n  benign_limit: -3\n"), CONFIG,
         ("{f}", "key eval.benign_limit")),
    Case("config s0_unseen equals s0", "c.yaml",
         text("prompts:\n  s0: Be free.\n  s0_unseen: [' Be free. ']\n"), CONFIG, ("{f}", "key prompts.s0_unseen")),
    Case("config s0_augment leaks s0_unseen with spaces", "c.yaml",
         text("prompts:\n  s0_unseen: [Be wild.]\npairs:\n  s0_augment: ['Be wild. ']\n"), CONFIG,
         ("{f}", "key pairs.s0_augment")),
    Case("config yaml alias bomb", "c.yaml",
         text("train:\n  lr: [&a [x, x, x, x, x, x, x, x, x, x], &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a], "
              "&c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b], [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]]\n"), CONFIG, ("{f}", "key train.lr", "...")),
    Case("config file not found", "none.yaml", lambda p: None, CONFIG, ("{f}", "not found")),
    Case("override without =", "c.yaml", text("{}\n"), (*CONFIG, "train.lr"), ("train.lr", "key.sub=value")),
    # constitution files
    Case("constitution not found", "none.yaml", lambda p: None, CONSTITUTION,
         ("{f}", "key generation.critique.constitution")),
    Case("constitution yaml syntax", "c.yaml", text("principles: [\n"), CONSTITUTION, ("{f}", "invalid YAML")),
    Case("constitution invalid utf-8", "c.yaml", raw(b"principles:\n  - critique: \xff\n"), CONSTITUTION,
         ("{f}", "UTF-8")),
    Case("constitution without principles", "c.yaml", text("rules: []\n"), CONSTITUTION, ("{f}", "principles")),
    Case("constitution entry without revision", "c.yaml", text(CONSTITUTION_OK + "  - critique: Why\n"),
         CONSTITUTION, ("{f}", "key principles[2].revision")),
    # model folders
    Case("model folder without config.json", "m", model_folder(drop=("config.json",)), MODEL,
         ("{f}", "key model.name_or_path", "config.json")),
    Case("model config.json not JSON", "m", model_folder(config="{not json"), MODEL, ("{f}", "config.json")),
    Case("model without weights", "m", model_folder(drop=("model.safetensors",)), MODEL, ("{f}", "weights")),
    Case("model without tokenizer", "m", model_folder(drop=("tokenizer.json",)), MODEL, ("{f}", "tokenizer")),
    Case("tokenizer without chat template", "m", model_folder(template=False), MODEL, ("{f}", "chat template")),
    Case("model path is a file", "m.bin", raw(b"\0" * 16), MODEL, ("{f}", "key model.name_or_path", "file")),
    Case("bare hub id", "x", lambda p: None, ("generate", *TINY, "model.name_or_path=someorg/some-model"),
         ("someorg/some-model", "key model.name_or_path", "hf://someorg/some-model")),
    Case("unknown model alias", "x", lambda p: None, ("generate", *TINY, "model.name_or_path=smollm3-135m"),
         ("smollm3-135m", "key model.name_or_path", "builtin alias")),
    Case("critic folder without chat template", "critic", model_folder(template=False),
         ("generate", *TINY, "generation.critic.name_or_path={f}"), ("{f}", "key generation.critic.name_or_path")),
    # judge folders
    Case("classifier judge folder not found", "j", lambda p: None, JUDGE, ("{f}", "key eval.judge_path", "not found")),
    Case("classifier judge without judge.json", "j", judge_folder("classifier", drop=("judge.json",)), JUDGE,
         ("{f}", "judge.json", "key eval.judge_path")),
    Case("classifier judge without weights", "j", judge_folder("classifier", drop=("judge.safetensors",)), JUDGE,
         ("{f}", "judge.safetensors")),
    Case("judge card not JSON", "j", judge_folder("classifier", card="{oops"), JUDGE, ("{f}", "judge.json")),
    Case("finetuned judge without weights", "j", judge_folder("finetuned", drop=("model.safetensors",)), FINETUNED,
         ("{f}", "model.safetensors", "key eval.judge_path")),
    Case("finetuned judge card without recipe", "j", judge_folder("finetuned", card="{}"), FINETUNED,
         ("{f}", "judge.json", "finetuned")),
    Case("llm judge model not found", "jm", lambda p: None,
         ("evaluate", *TINY, "eval.judge=llm", "eval.judge_model={f}"), ("{f}", "key eval.judge_model")),
    Case("judge input invalid utf-8", "rows.jsonl", raw(b'{"prompt": "p", "response": "\xff"}\n'), JUDGE_INPUT,
         ("{f}", "row 1", "UTF-8")),
    Case("judge input without response", "rows.jsonl", jsonl({"prompt": "p", "response": "r"}, {"prompt": "p"}),
         JUDGE_INPUT, ("{f}", "row 2", "field 'response'")),
    Case("judge input blank", "rows.jsonl", text("\n\n"), JUDGE_INPUT, ("{f}", "no rows")),
    Case("judge --judge-path folder without card", "j", judge_folder("classifier", drop=("judge.json",)),
         ("judge", "--judge", "classifier", "--judge-path", "{f}", "--input", "{tmp}/rows.jsonl",
          "--output", "{tmp}/out.jsonl"), ("{f}", "key --judge-path")),
    Case("train-judge pair file with object top level", "pairs.json", json_file(PAIR),
         ("train-judge", "--kind", "classifier", "--output", "{tmp}/judge", "--pairs", "{f}"), ("{f}", "top level")),
    # output and run folders
    Case("run_dir is a file", "run", text("x"), ("generate", "--config", "configs/tiny.yaml", "run_dir={f}"),
         ("{f}", "key run_dir", "is a file")),
    Case("run_dir under a file", "blocker", text("x"), ("generate", "--config", "configs/tiny.yaml", "run_dir={f}/run"),
         ("{f}", "key run_dir")),
    Case("run_dir on a read-only file system", "x", lambda p: None,
         ("generate", "--config", "configs/tiny.yaml", "run_dir=/sys/cst-ray-run"), ("/sys/cst-ray-run", "key run_dir")),
    Case("run_dir in a read-only folder", "ro", read_only_folder,
         ("generate", "--config", "configs/tiny.yaml", "run_dir={f}/run"), ("{f}", "key run_dir", "not writable"),
         as_root=False),
    Case("train.storage_path under a file", "blocker", text("x"),
         ("train", *TINY, "train.storage_path={f}/ckpt"), ("{f}", "key train.storage_path")),
    Case("judge --output in a read-only place", "x", lambda p: None,
         ("judge", "--input", "{tmp}/rows.jsonl", "--output", "/sys/cst-ray/out.jsonl"), ("/sys/cst-ray", "key --output")),
    Case("judge --output is a folder", "out", lambda p: p.mkdir(),
         ("judge", "--input", "{tmp}/rows.jsonl", "--output", "{f}"), ("{f}", "key --output", "folder")),
    Case("train-judge --output is a file", "judge", text("x"),
         ("train-judge", "--kind", "classifier", "--output", "{f}"), ("{f}", "key --output")),
]
