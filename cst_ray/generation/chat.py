"""Chat with a model from the terminal (`cst-ray chat`): the way to see the switch by hand.

A `ChatSession` keeps the system prompt and the turns so far and sends the whole conversation
to an engine (`cst_ray.engines`, greedy by default). `s1` / `s0` name the configured safe and
uncensored system prompts; any other text is used as is, and `none` sends no system turn.
`repl` reads lines and understands:

    /system s1 | s0 | none | <text>   switch the system prompt (the turns so far are kept)
    /reset                             forget the turns so far
    /quit                              leave (so do Ctrl-D and Ctrl-C)
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from cst_ray.config.schema import S1_DEFAULT, EngineConfig, ModelConfig, SystemPrompts
from cst_ray.engines.base import Conversation, Engine
from cst_ray.engines.build import build_engine
from cst_ray.models.resolve import resolve_model

log = logging.getLogger(__name__)

HELP = "commands: /system s1|s0|none|<text>, /reset, /quit"
PROMPT = "you> "


@dataclass
class ChatSession:
    engine: Engine
    system: str = S1_DEFAULT
    prompts: SystemPrompts = field(default_factory=SystemPrompts)
    max_new_tokens: int | None = None
    temperature: float = 0.0
    history: list[dict] = field(default_factory=list)

    def conversation(self, user: str) -> Conversation:
        """The messages sent for `user`: the system turn (if any), the turns so far, `user`."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.history + [{"role": "user", "content": user}]

    def ask(self, user: str) -> str:
        conv = self.conversation(user)
        done = self.engine.chat([conv], max_new_tokens=self.max_new_tokens, temperature=self.temperature)[0]
        answer = done.text.strip()
        self.history += [conv[-1], {"role": "assistant", "content": answer}]
        return answer

    def set_system(self, spec: str) -> str:
        self.system = self.prompts.resolve(spec)
        return self.describe()

    def reset(self) -> str:
        self.history = []
        return "history cleared"

    def describe(self) -> str:
        return f"system prompt ({self.prompts.name(self.system)}): {self.system or '(none)'}"


def handle(session: ChatSession, line: str) -> tuple[str, bool]:
    """One input line -> (what to show, whether to go on)."""
    text = line.strip()
    if not text:
        return "", True
    if not text.startswith("/"):
        return session.ask(text) or "(empty answer)", True
    cmd, _, arg = text.partition(" ")
    if cmd in ("/quit", "/exit"):
        return "", False
    if cmd == "/reset":
        return session.reset(), True
    if cmd == "/system":
        return (session.set_system(arg) if arg.strip() else session.describe()), True
    return f"unknown command {cmd}; {HELP}", True


def repl(session: ChatSession, read: Callable[[str], str] = input, write: Callable[[str], object] = print) -> None:
    """Read lines until /quit or end of input, answering each with the session."""
    if read is input:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401, PLC0415 (side effect: line editing for input(), REPL only)
    write(session.describe())
    write(HELP)
    while True:
        try:
            line = read(PROMPT)
        except (EOFError, KeyboardInterrupt):
            write("")
            return
        shown, go_on = handle(session, line)
        if shown:
            write(shown)
        if not go_on:
            return


def open_session(model: str, *, system: str = "s1", prompts: SystemPrompts | None = None, backend: str = "hf",
                 max_new_tokens: int = 256, temperature: float = 0.0, dtype: str = "float32",
                 trust_remote_code: bool = False) -> ChatSession:
    """Resolve `model` (alias, folder or hub id), start an engine and a session under `system`."""
    prompts = prompts or SystemPrompts()
    path = resolve_model(ModelConfig(name_or_path=model, trust_remote_code=trust_remote_code))
    log.info(f"chat: loading {path} ({backend})")
    if backend == "vllm":
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout holds the chat only
    engine = build_engine(path, EngineConfig(backend=backend, dtype=dtype, max_new_tokens=max_new_tokens,
                                             temperature=temperature), trust_remote_code=trust_remote_code)
    return ChatSession(engine, system=prompts.resolve(system), prompts=prompts, max_new_tokens=max_new_tokens,
                       temperature=temperature)
