"""`cst-ray chat`: the session logic on a scripted engine, then the real command on the tiny
model, driven through a pseudo-terminal (interactive) and with --prompt (one-shot). The engine
is wrapped to record every conversation sent, so the tests see what the model was given."""

import json
import os
import pty
import select
import subprocess
import sys
import time

import pytest
from conftest import ROOT

from cst_ray.config.schema import S0_DEFAULT, S1_DEFAULT, SystemPrompts
from cst_ray.engines.base import Completion
from cst_ray.generation.chat import PROMPT, ChatSession, handle, repl


class _Echo:
    """Answers with the system prompt it was given and the number of messages."""

    def __init__(self):
        self.sent = []

    def chat(self, conversations, *, max_new_tokens=None, temperature=None):
        self.sent += conversations
        return [Completion(f"{c[0]['content'] if c[0]['role'] == 'system' else '-'}|{len(c)}", 1, 1, "stop")
                for c in conversations]


def test_session_switches_system_prompt_keeps_turns_and_resets():
    s = ChatSession(_Echo(), system=S1_DEFAULT)
    assert handle(s, "hi") == (f"{S1_DEFAULT}|2", True)
    assert handle(s, "/system s0")[0] == f"system prompt (s0): {S0_DEFAULT}"
    assert handle(s, "again") == (f"{S0_DEFAULT}|4", True)  # system, hi, answer, again
    assert handle(s, "/reset") == ("history cleared", True)
    handle(s, "/system Talk like a pirate.")
    assert handle(s, "x") == ("Talk like a pirate.|2", True)
    handle(s, "/system none")
    assert handle(s, "y") == ("-|3", True) and s.engine.sent[-1][0] == {"role": "user", "content": "x"}
    assert handle(s, "/bogus")[0].startswith("unknown command /bogus")
    assert handle(s, "/quit") == ("", False)


def test_repl_reads_until_quit_and_custom_s1_s0():
    prompts = SystemPrompts(s1="SAFE", s0="FREE")
    s = ChatSession(_Echo(), system=prompts.resolve("s0"), prompts=prompts)
    lines, shown = iter(["q1", "/system s1", "q2", "/quit", "never read"]), []
    repl(s, read=lambda _: next(lines), write=shown.append)
    assert shown[0] == "system prompt (s0): FREE"
    assert shown[2:] == ["FREE|2", "system prompt (s1): SAFE", "SAFE|4"]
    assert next(lines) == "never read"


DRIVER = r"""
import json, sys
from cst_ray.generation import chat

real, record = chat.build_engine, sys.argv[1]

def recording(path, cfg, **kw):
    engine = real(path, cfg, **kw)
    inner = engine.chat
    def chat_and_record(conversations, **k):
        out = inner(conversations, **k)
        with open(record, "a") as f:
            for c, o in zip(conversations, out):
                f.write(json.dumps({"conversation": c, "text": o.text, "temperature": k.get("temperature")}) + "\n")
        return out
    engine.chat = chat_and_record
    return engine

chat.build_engine = recording
from cst_ray.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class _Terminal:
    """The command on a pseudo-terminal: its stdin, stdout and stderr are the tty."""

    def __init__(self, args: list[str]):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([sys.executable, "-c", DRIVER, *args], stdin=slave, stdout=slave, stderr=slave,
                                     cwd=ROOT, start_new_session=True)
        os.close(slave)
        self.out = ""

    def wait_for_prompt(self, n: int, timeout: float = 240) -> str:
        """Read until the `n`-th input prompt shows; -> everything read so far."""
        deadline = time.time() + timeout
        while self.out.count(PROMPT) < n:
            assert time.time() < deadline, f"no prompt #{n} within {timeout}s; got:\n{self.out[-2000:]}"
            if select.select([self.master], [], [], 1)[0]:
                try:
                    self.out += os.read(self.master, 4096).decode(errors="replace")
                except OSError:  # the child closed the tty
                    assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{self.out[-2000:]}"
        return self.out

    def send(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode())

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        os.close(self.master)


def test_interactive_chat_on_a_terminal_switches_what_the_model_is_sent(tmp_path, tiny_model_path):
    record = tmp_path / "sent.jsonl"
    term = _Terminal([str(record), "chat", "--model", tiny_model_path, "--max-new-tokens", "6"])
    try:
        steps = ["Hello there", "And again", "/system s0", "Third message", "/reset",
                 "/system Talk like a pirate.", "Fourth message"]
        for n, line in enumerate(steps, start=1):
            term.wait_for_prompt(n)
            term.send(line)
        out = term.wait_for_prompt(len(steps) + 1)
        term.send("/quit")
        assert term.proc.wait(timeout=60) == 0
    finally:
        term.close()
    assert f"system prompt (s1): {S1_DEFAULT}" in out and f"system prompt (s0): {S0_DEFAULT}" in out
    assert "history cleared" in out and "system prompt (custom): Talk like a pirate." in out
    sent = _records(record)
    assert len(sent) == 4 and {r["temperature"] for r in sent} == {0.0}  # greedy by default
    convs = [r["conversation"] for r in sent]
    assert [m["role"] for m in convs[1]] == ["system", "user", "assistant", "user"]
    assert convs[0][0] == convs[1][0] == {"role": "system", "content": S1_DEFAULT}
    assert convs[1][2]["content"] == sent[0]["text"].strip()  # the answer shown went into the history
    assert convs[2][0] == {"role": "system", "content": S0_DEFAULT} and len(convs[2]) == 6
    assert convs[2][1:5] == convs[1][1:] + [{"role": "assistant", "content": sent[1]["text"].strip()}]
    assert convs[3] == [{"role": "system", "content": "Talk like a pirate."},
                        {"role": "user", "content": "Fourth message"}]


def test_one_shot_prints_the_answer_and_exits(tmp_path, tiny_model_path):
    record = tmp_path / "sent.jsonl"
    p = subprocess.run([sys.executable, "-c", DRIVER, str(record), "chat", "--model", tiny_model_path, "--system", "s0",
                        "--prompt", "How do I bake bread?", "--max-new-tokens", "8", "--temperature", "1.0"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    (sent,) = _records(record)
    assert sent["conversation"] == [{"role": "system", "content": S0_DEFAULT},
                                    {"role": "user", "content": "How do I bake bread?"}]
    assert sent["temperature"] == 1.0 and sent["text"].strip()
    assert p.stdout == sent["text"].strip() + "\n"  # the answer and nothing else on stdout


def test_chat_needs_a_model():
    from conftest import run_cli

    p = run_cli(["chat", "--prompt", "hi"], timeout=120)
    assert p.returncode == 2 and "--model" in p.stderr


@pytest.mark.parametrize("spec,expected", [("s1", S1_DEFAULT), ("S0", S0_DEFAULT), ("none", ""), (" my rules ", "my rules")])
def test_system_prompt_names(spec, expected):
    assert SystemPrompts().resolve(spec) == expected


@pytest.mark.heavy
def test_one_shot_on_vllm_keeps_stdout_to_the_answer(tmp_path, tiny_model_path):
    record = tmp_path / "sent.jsonl"
    p = subprocess.run([sys.executable, "-c", DRIVER, str(record), "chat", "--model", tiny_model_path, "--backend", "vllm",
                        "--prompt", "Hello", "--max-new-tokens", "8", "--temperature", "1.0"],
                       cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    (sent,) = _records(record)
    assert sent["conversation"][0] == {"role": "system", "content": S1_DEFAULT}
    assert p.stdout == sent["text"].strip() + "\n"  # vLLM's own log went to stderr
