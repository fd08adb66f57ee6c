"""One way to put a conversation through a model's chat template, for every part of cst-ray
(generation engines, training tokenization, the reference pass, the extra tasks' scoring):
`chat_text`, and the token ids of a (system, user) prompt and of an answer after it
(`prompt_ids`, `response_ids`), which training and evaluation both score.

A template that rejects the system role (Gemma 2's raises), or silently drops it, gets the
system prompt folded into the first user turn, "<system>\\n\\n<user>": the usual convention for
such models. CST's switch then lives in the user turn; `folds_system` says so to the run log
and the model card. A tokenizer with no template at all is refused before any work
(`check_chat_template`), naming `model.chat_template`, which takes a Jinja template file.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cst_ray.core.errors import ConfigError

log = logging.getLogger(__name__)
_PROBE = "cst-ray system probe 7f3a"
_FOLDS: dict[str, bool] = {}  # chat template text -> whether it needs the system folded


def set_chat_template(tokenizer, template_file: str) -> None:
    """Give `tokenizer` the Jinja template in `template_file` ("" = keep its own)."""
    if template_file:
        tokenizer.chat_template = Path(template_file).expanduser().read_text()


def check_chat_template(tokenizer, model_name: str) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"{model_name} has no chat template (a base model?): CST needs one to place the system "
                          f"prompt; give a Jinja template file", key="model.chat_template")


def folds_system(tokenizer) -> bool:
    """True when the template rejects a system message or renders it without its text."""
    key = str(getattr(tokenizer, "chat_template", None))  # the answer depends on the template alone
    if key not in _FOLDS:
        msgs = [{"role": "system", "content": _PROBE}, {"role": "user", "content": "hi"}]
        try:
            text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            _FOLDS[key] = _PROBE not in text
        except Exception:  # noqa: BLE001 - a template's own way to say "no system role"
            _FOLDS[key] = True
        if _FOLDS[key]:
            log.warning(f"{getattr(tokenizer, 'name_or_path', 'the model')}: its chat template has no system role; "
                        f"system prompts are folded into the first user turn (the switch lives there)")
    return _FOLDS[key]


def fold_system(messages: list[dict]) -> list[dict]:
    """[system, user, ...] -> [user = system + blank line + user, ...]."""
    if not messages or messages[0]["role"] != "system":
        return messages
    system, rest = messages[0]["content"], list(messages[1:])
    if rest and rest[0]["role"] == "user":
        return [{"role": "user", "content": f"{system}\n\n{rest[0]['content']}"}, *rest[1:]]
    return [{"role": "user", "content": system}, *rest]


def chat_text(tokenizer, messages: list[dict], *, add_generation_prompt: bool) -> str:
    """The template's text for `messages`, with the system prompt folded where it must be."""
    msgs = fold_system(messages) if folds_system(tokenizer) else messages
    return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_generation_prompt)


class NotAPrefixError(ValueError):
    """The template renders the prompt differently once an answer follows it."""


def prompt_ids(tok, system: str, user: str) -> list[int]:
    """Token ids of [system, user] with the generation prompt (the context an answer follows)."""
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return tok(chat_text(tok, msgs, add_generation_prompt=True), add_special_tokens=False)["input_ids"]


def response_ids(tok, system: str, user: str, response: str) -> list[int]:
    """Token ids of the assistant turn `response` after `prompt_ids(tok, system, user)`: the
    template's text of the whole conversation less the prompt's, with its end-of-turn token (EOS
    added where the template has none)."""
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    prompt_text = chat_text(tok, msgs, add_generation_prompt=True)
    full_text = chat_text(tok, msgs + [{"role": "assistant", "content": response}], add_generation_prompt=False)
    if not full_text.startswith(prompt_text):
        raise NotAPrefixError("the chat template does not render the prompt as a prefix of prompt + answer")
    ids = tok(full_text[len(prompt_text):], add_special_tokens=False)["input_ids"]
    if tok.eos_token_id is not None and tok.eos_token_id not in ids:
        ids = ids + [tok.eos_token_id]  # templates without an end-of-turn token
    return ids
