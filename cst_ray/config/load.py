"""Loading a `CSTConfig`: YAML, dotted overrides, type coercion and cross-field validation.

Every error is a `ConfigError` naming the dotted key and the file.

    cfg = load_config("configs/default.yaml", overrides=["train.lr=1e-5"])
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import reprlib
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from cst_ray.config.policies import validate_policies
from cst_ray.config.schema import CSTConfig
from cst_ray.core.errors import ConfigError


def _short(value: Any, limit: int = 80) -> str:
    """repr(value) cut to `limit` characters: an error line never carries a whole expanded value."""
    r = reprlib.Repr()
    r.maxstring, r.maxother, r.maxlist, r.maxdict, r.maxlevel = limit, limit, 4, 4, 2
    text = r.repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, key: str, file: str | None) -> Any:
    origin = get_origin(tp)
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"expected a mapping, got {type(value).__name__}", key=key, file=file)
        return _build(tp, value, key, file)
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"must be one of {list(allowed)}, got {_short(value)}", key=key, file=file)
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for arg in get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, arg, key, file)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"value {_short(value)} matches none of {get_args(tp)}", key=key, file=file)
    if origin is list:
        (item_tp,) = get_args(tp) or (Any,)
        if isinstance(value, str) and item_tp is str:
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"expected a list, got {type(value).__name__}", key=key, file=file)
        return [_coerce(v, item_tp, f"{key}[{i}]", file) for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"expected true/false, got {_short(value)}", key=key, file=file)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"expected an integer, got {_short(value)}", key=key, file=file)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"expected a number, got {_short(value)}", key=key, file=file)
        if not math.isfinite(value):
            raise ConfigError(f"expected a finite number, got {_short(value)}", key=key, file=file)
        return float(value)
    if tp is str:
        if value is None:
            return ""
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"expected a string, got {_short(value)}", key=key, file=file)
        return str(value)
    return value


def _build(cls: type, data: dict, prefix: str, file: str | None):
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in names:
            raise ConfigError(f"unknown key (known: {', '.join(sorted(names))})", key=key, file=file)
        kwargs[k] = _coerce(v, hints[k], key, file)
    return cls(**kwargs)


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError("cannot set a sub-key of a scalar", key=dotted)
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`train.lr=1e-5` -> ("train.lr", 1e-5); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"cannot parse value {raw!r}: {yaml_problem(e)}", key=key) from None
    # YAML reads "1e-5" as a string; accept scientific notation for numbers.
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in "eE.") else value
        except ValueError:
            pass
    return key.strip(), value


def config_from_dict(data: dict, *, file: str | None = None, overrides: list[str] | None = None) -> CSTConfig:
    data = dict(data or {})
    for ov in overrides or []:
        k, v = parse_override(ov)
        _set_dotted(data, k, v)
    cfg = _build(CSTConfig, data, "", file)
    validate(cfg, file)
    return cfg


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> CSTConfig:
    data: dict = {}
    file = None
    if path:
        file = str(path)
        p = Path(path)
        if not p.is_file():
            raise ConfigError("config file not found", file=file)
        data = read_yaml_mapping(p)
    return config_from_dict(data, file=file, overrides=overrides)


def yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where (PyYAML's own text spans lines)."""
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(e, "problem", None) or " ".join(str(e).split())
    return f"{problem}{where}"


def read_yaml_mapping(p: Path, key: str | None = None) -> dict:
    """A YAML file whose top level is a mapping (or empty); anything else is a ConfigError
    naming the file (and `key`, the config key that points to it)."""
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read the file ({e.strerror or e})", file=str(p), key=key) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ConfigError(f"invalid UTF-8 at line {line} (byte {e.start}); save the file as UTF-8", file=str(p), key=key) from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML: {yaml_problem(e)}", file=str(p), key=key) from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"top level must be a mapping, got {type(loaded).__name__}", file=str(p), key=key)
    return loaded or {}


# user:password@ in a URI, or a secret in its query string (presigned URLs, tokens)
# user:password@ or a bare token@ in a URI, or a secret in its query string (AWS SigV4 and SigV2,
# GCS signed URLs, OAuth tokens, API keys)
_CREDENTIALS_RE = re.compile(
    r"^[a-z][a-z0-9+.-]*://[^/@\s]+@|[?&](x-amz-credential|x-amz-signature|x-amz-security-token|"
    r"x-goog-credential|x-goog-signature|awsaccesskeyid|signature|access_?key|access_token|api_?key|"
    r"secret|token|password|sig)=", re.IGNORECASE)


def check_no_credentials(cfg: CSTConfig, file: str | None = None) -> None:
    """Credentials belong in the environment (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, HF_TOKEN,
    MLFLOW_TRACKING_*), never in config values: those are written to config.yaml, stats and logs."""
    stack = [("", to_dict(cfg))]
    while stack:
        prefix, tree = stack.pop()
        for k, v in tree.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict):
                stack.append((key + ".", v))
                continue
            for i, item in enumerate(v if isinstance(v, list) else [v]):
                if isinstance(item, dict):  # a list of mappings (data.source entries)
                    stack.append((f"{key}[{i}].", item))
                if isinstance(item, str) and _CREDENTIALS_RE.search(item):
                    raise ConfigError("holds credentials in a URI; pass them through the environment "
                                      "(e.g. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) so they are never "
                                      "written to config.yaml, stats or logs", key=key, file=file)


def validate(cfg: CSTConfig, file: str | None = None) -> None:
    """Cross-field checks of a built config; the first that fails is a ConfigError naming its key
    and `file`. The checks run in a fixed order, so the same config always reports the same one."""
    def need(cond: bool, key: str, msg: str) -> None:
        if not cond:
            raise ConfigError(msg, key=key, file=file)

    check_no_credentials(cfg, file)
    _validate_generation(cfg, need)
    _validate_training(cfg, need)
    _validate_sources(cfg, need)
    _validate_aims_policies_and_loss(cfg, need)


def _validate_generation(cfg: CSTConfig, need: Callable[[bool, str, str], None]) -> None:
    """The held-out split, the generation pool, engine and critique, the eval sampling."""
    need(0.0 <= cfg.data.eval_fraction <= 1.0, "data.eval_fraction", "must be in [0, 1]")
    need(cfg.data.eval_fraction < 1.0 or not cfg.pairs.use_generated, "data.eval_fraction",
         "1.0 leaves no prompts to generate pairs from; it needs pairs.use_generated: false")
    need(cfg.generation.pool.min_actors >= 1, "generation.pool.min_actors", "must be >= 1")
    need(
        cfg.generation.pool.max_actors >= cfg.generation.pool.min_actors,
        "generation.pool.max_actors",
        "must be >= generation.pool.min_actors",
    )
    need(cfg.generation.pool.batch_size >= 1, "generation.pool.batch_size", "must be >= 1")
    e = cfg.generation.engine
    need(e.max_new_tokens >= 1, "generation.engine.max_new_tokens", "must be >= 1")
    need(e.max_model_len > e.max_new_tokens, "generation.engine.max_model_len",
         f"must be > generation.engine.max_new_tokens ({e.max_new_tokens}): prompts need room too")
    need(cfg.generation.pool.batches_in_flight >= 1, "generation.pool.batches_in_flight", "must be >= 1")
    need(cfg.generation.pool.rows_at_once >= 0, "generation.pool.rows_at_once", "must be >= 0 (0 = all)")
    need(cfg.generation.pool.stream_rows >= 0, "generation.pool.stream_rows", "must be >= 0 (0 = the whole batch)")
    need(cfg.generation.pool.stall_timeout_s >= 0, "generation.pool.stall_timeout_s", "must be >= 0 (0 = derived)")
    need(cfg.generation.pool.min_tokens_per_s > 0, "generation.pool.min_tokens_per_s", "must be > 0")
    need(cfg.generation.pool.max_restarts >= 0, "generation.pool.max_restarts", "must be >= 0 (retries are bounded)")
    need(e.dtype in ("auto", "float32", "bfloat16", "float16"), "generation.engine.dtype",
         "must be auto, float32, bfloat16 or float16")
    need(cfg.generation.critique.principles_per_prompt >= 1, "generation.critique.principles_per_prompt", "must be >= 1")
    need(cfg.generation.critique.revision_rounds >= 1, "generation.critique.revision_rounds", "must be >= 1")
    need(cfg.generation.critic.revision_samples >= 1, "generation.critic.revision_samples", "must be >= 1")
    need(cfg.generation.critique.y0_samples >= 1, "generation.critique.y0_samples", "must be >= 1")
    need("{prompt}" in cfg.generation.critique.y0_template, "generation.critique.y0_template", "must contain {prompt}")
    need(_formats(cfg.generation.critique.y0_template), "generation.critique.y0_template",
         "must format with {prompt} alone; write other braces doubled ({{ and }})")
    need(e.temperature >= 0, "generation.engine.temperature", "must be >= 0")
    need(0 < e.top_p <= 1, "generation.engine.top_p", "must be in (0, 1]")
    need(0 < e.gpu_memory_utilization <= 1, "generation.engine.gpu_memory_utilization", "must be in (0, 1]")
    need(cfg.eval.temperature >= 0, "eval.temperature", "must be >= 0")
    need(cfg.eval.benign_limit >= 0, "eval.benign_limit", "must be >= 0")


def _validate_training(cfg: CSTConfig, need: Callable[[bool, str, str], None]) -> None:
    """The chat template, training, a held-out split, the system prompts and their wordings, the pairs."""
    need(not cfg.model.chat_template or Path(cfg.model.chat_template).expanduser().is_file(), "model.chat_template",
         f"file not found: {cfg.model.chat_template}")
    need(cfg.train.lora.r >= 1, "train.lora.r", "must be >= 1")
    need(bool(cfg.train.lora.target_modules), "train.lora.target_modules", "is empty: name modules, or [all-linear]")
    need(cfg.train.gpu_memory_gb >= 0, "train.gpu_memory_gb", "must be >= 0 (0 = the visible GPU's)")
    need(cfg.train.keep_checkpoints >= 1, "train.keep_checkpoints", "must be >= 1")
    need(cfg.train.max_failures >= 0, "train.max_failures", "must be >= 0 (retries are bounded; -1 would retry forever)")
    need(cfg.train.max_grad_norm >= 0, "train.max_grad_norm", "must be >= 0 (0 = no clipping)")
    need(cfg.train.weight_decay >= 0, "train.weight_decay", "must be >= 0")
    need(cfg.data.eval_fraction > 0, "data.eval_fraction",
         "must be > 0: the held-out prompts that S1 and S0 are measured on come from this split")
    need(bool(cfg.train.methods) and set(cfg.train.methods) <= {"cst", "dpo"}, "train.methods",
         "must be a non-empty list of 'cst' and/or 'dpo'")
    need(cfg.train.num_workers >= 1, "train.num_workers", "must be >= 1")
    need(cfg.train.lr > 0, "train.lr", "must be > 0")
    need(cfg.train.micro_batch_size >= 1, "train.micro_batch_size", "must be >= 1")
    need(cfg.train.grad_accum >= 1, "train.grad_accum", "must be >= 1")
    need(cfg.train.epochs >= 1, "train.epochs", "must be >= 1")
    need(cfg.train.max_steps >= 0, "train.max_steps", "must be >= 0 (0 = epochs x steps per epoch)")
    need(0.0 <= cfg.train.warmup_ratio < 1.0, "train.warmup_ratio", "must be in [0, 1)")
    need(cfg.train.nll_weight >= 0, "train.nll_weight", "must be >= 0")
    need(cfg.prompts.s0.strip() != cfg.prompts.s1.strip(), "prompts.s0", "must differ from prompts.s1: CST needs two system prompts")
    need(cfg.prompts.s0.strip() not in {w.strip() for w in cfg.prompts.s0_unseen}, "prompts.s0_unseen",
         "contains the training wording prompts.s0; an unseen wording must differ from it")
    need(cfg.prompts.s1.strip() not in {w.strip() for w in cfg.prompts.s0_unseen + cfg.pairs.s0_augment},
         "prompts.s1", "must not be one of the uncensored wordings (prompts.s0_unseen, pairs.s0_augment)")
    need(cfg.data.benign_limit >= 0, "data.benign_limit", "must be >= 0")
    need(cfg.pairs.use_generated or bool(cfg.pairs.extra_tasks), "pairs.extra_tasks",
         "is empty while pairs.use_generated is false: there would be no pairs to train on")
    need(0.0 <= cfg.pairs.extra_tasks_eval_fraction < 1.0, "pairs.extra_tasks_eval_fraction",
         "must be in [0, 1): the share of the extra tasks' prompts held out of training")
    need(cfg.eval.extra_tasks_limit >= 0, "eval.extra_tasks_limit", "must be >= 0 (0 = all held-out rows)")
    need(cfg.pairs.reference_dtype in ("auto", "float32", "bfloat16", "float16"), "pairs.reference_dtype",
         "must be auto, float32, bfloat16 or float16")


def _validate_sources(cfg: CSTConfig, need: Callable[[bool, str, str], None]) -> None:
    """The prompt sources (`data.source`), unseen sources and benign sources."""
    specs = cfg.data.source if isinstance(cfg.data.source, list) else [cfg.data.source]
    names = [x if isinstance(x, str) else x.name for x in specs]
    need(bool(names), "data.source", "is an empty list: name at least one prompt source")
    for i, x in enumerate(specs):
        need(bool(x if isinstance(x, str) else x.name), f"data.source[{i}].name", "is empty: name a builtin or a file")
        need(isinstance(x, str) or x.limit >= 0, f"data.source[{i}].limit", "must be >= 0 (0 = all)")
    dup = sorted({n for n in names if names.count(n) > 1})
    need(not dup, "data.source", f"names {dup} more than once")
    leaked = sorted(set(cfg.eval.unseen_sources) & set(names))
    need(not leaked, "eval.unseen_sources", f"contains training source(s) of data.source: {leaked}; "
         f"an unseen source must be one no training pair comes from")
    need(cfg.eval.unseen_limit >= 1 or not cfg.eval.unseen_sources, "eval.unseen_limit", "must be >= 1")
    need(cfg.eval.benign_source not in cfg.data.benign_sources, "data.benign_sources",
         f"must not contain eval.benign_source ({cfg.eval.benign_source!r}), which measures over-refusal")


def _validate_aims_policies_and_loss(cfg: CSTConfig, need: Callable[[bool, str, str], None]) -> None:
    """The aims' shares, held-out wordings, `policies`, and the DPO loss settings."""
    a = cfg.eval.aims
    for key in ("s1_min", "s0_min", "s0_unseen_min", "over_refusal_max", "unseen_source_s1_min",
                "unseen_source_s0_min", "policy_adherence_min", "policy_cell_min", "policy_unseen_min"):
        need(0.0 <= getattr(a, key) <= 1.0, f"eval.aims.{key}", "must be a share in [0, 1]")
    leaked = sorted({w.strip() for w in cfg.pairs.s0_augment} & {w.strip() for w in cfg.prompts.s0_unseen})
    need(not leaked, "pairs.s0_augment", f"contains the held-out wording(s) of prompts.s0_unseen: {leaked}")
    if cfg.policies:
        validate_policies(cfg.policies)
        need(cfg.pairs.use_generated, "pairs.use_generated", "must be true with policies: their pairs are compiled "
             "from the generated answers and refusals")
        need(not cfg.pairs.s0_augment, "pairs.s0_augment", "is for the classic s1/s0 pair; a policy lists its "
             "wordings in policies[].prompts")
    need(cfg.train.zero_stage in (0, 1, 2, 3), "train.zero_stage", "must be 0, 1, 2 or 3")
    need(cfg.train.max_length >= 32, "train.max_length", "must be >= 32")
    need(cfg.train.min_response_tokens >= 1, "train.min_response_tokens", "must be >= 1")
    need(cfg.train.max_completion_length == 0 or cfg.train.max_completion_length >= cfg.train.min_response_tokens,
         "train.max_completion_length", f"must be 0 (whole answers) or >= train.min_response_tokens "
         f"({cfg.train.min_response_tokens})")
    need(cfg.train.beta > 0, "train.beta", "must be > 0")
    need(0.0 <= cfg.train.label_smoothing < 0.5, "train.label_smoothing", "must be in [0, 0.5)")
    need(
        cfg.train.reference != "adapter" or cfg.train.lora.enabled,
        "train.reference",
        "'adapter' needs train.lora.enabled: true",
    )


def _formats(template: str) -> bool:
    try:
        template.format(prompt="x")
        return True
    except (KeyError, IndexError, ValueError, AttributeError):
        return False


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: CSTConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
