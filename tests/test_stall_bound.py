"""Issue 28: a slow but healthy generate stage is never killed by Ray Data's no-progress timeout,
and one that truly stalls ends in one line naming the stage, the batch and the setting to raise.

The generate stage runs for real (prompts, Ray Data, the tiny model in vLLM) with its critique
chain slowed down here in the test; the bound is set small so that the test takes seconds."""

import re
import time

import pytest

from cst_ray.config.load import load_config
from cst_ray.config.schema import ActorPoolConfig
from cst_ray.core.errors import StageError
from cst_ray.dataio.actor_map import stall_bound_s

BASE = ["data.limit=8", "data.eval_limit=2", "generation.pool.batch_size=2", "generation.rows_per_shard=2",
        "generation.engine.max_new_tokens=4", "generation.critique.critique_max_new_tokens=4",
        "generation.progress_interval_s=1"]


def test_the_derived_bound_follows_batch_size_rate_and_tokens():
    pool = ActorPoolConfig(batch_size=16, batches_in_flight=2, min_tokens_per_s=4.0)
    # 16 rows x 2 calls sharing the actor x 304 tokens at 4 tok/s = 2432 s a call; twice that
    assert stall_bound_s(pool, 16, 304) == 4864.0
    assert stall_bound_s(pool, 1, 4) == 600.0  # never under the engines' start-up allowance
    assert stall_bound_s(ActorPoolConfig(stall_timeout_s=42.0), 16, 304) == 42.0  # an explicit setting wins


# Ray Data counts the engines' start (17 s for the tiny model on a 2-core Xeon, more on a slower
# machine) against the no-progress bound, so the bound leaves room for it plus one slow call.
BOUND_S = 60.0


def _slow_generate(monkeypatch, tmp_path, *, delay_s: float, stuck_after: int, bound_s: float, extra=()):
    """Run the generate stage with every chain call `delay_s` slower, and every call after the
    `stuck_after`-th sleeping for minutes (a stalled engine)."""
    import ray

    import cst_ray.stages.generate as gen
    from cst_ray.generation.critique import CritiqueChain

    class SlowChain(CritiqueChain):  # defined here: Ray pickles it by value
        calls = 0

        def __call__(self, batch):
            SlowChain.calls += 1
            time.sleep(delay_s if SlowChain.calls <= stuck_after else 300.0)
            yield from super().__call__(batch)

    monkeypatch.setattr(gen, "CritiqueChain", SlowChain)
    cfg = load_config("configs/tiny.yaml", [*BASE, f"run_dir={tmp_path / 'run'}",
                                            f"generation.pool.stall_timeout_s={bound_s}", *extra])
    try:
        return gen.generate(cfg)
    finally:
        ray.shutdown()


@pytest.mark.heavy
def test_slow_progress_that_keeps_arriving_is_not_a_stall(monkeypatch, tmp_path):
    t0 = time.time()
    one_actor = ["data.limit=12", "generation.pool.min_actors=1", "generation.pool.max_actors=1"]
    stats = _slow_generate(monkeypatch, tmp_path, delay_s=12.0, stuck_after=99, bound_s=BOUND_S, extra=one_actor)
    assert stats["rows_out"] + stats["rows_rejected"] == 12
    assert time.time() - t0 > BOUND_S + 5  # six 12 s calls in a row: the whole stage outlasted the bound


@pytest.mark.heavy
def test_a_stalled_batch_ends_in_one_line_naming_the_stage_batch_and_setting(monkeypatch, tmp_path):
    with pytest.raises(StageError) as e:
        _slow_generate(monkeypatch, tmp_path, delay_s=0.0, stuck_after=3, bound_s=BOUND_S)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"generate: no row came back from the actor pool for {BOUND_S:.0f}s "
                          "(generation.pool.stall_timeout_s, set)")
    m = re.search(r"; (\d) of 4 batches still out, the first is batch (\d) \(2 rows, ids (\S+) \.\. (\S+)\);", msg)
    assert m, msg
    out, first = int(m.group(1)), int(m.group(2))
    assert out >= 1, msg  # the batch of the stuck call, and any queued behind it on the one actor
    assert "raise generation.pool.stall_timeout_s or lower generation.pool.batch_size" in msg
    # the rows that came back are kept, and the batch named is one that did not wholly come back
    from cst_ray.dataio.shards import read_shards

    ids = set()
    for folder in ("generations", "rejected_rows"):  # kept or rejected by the quality filters
        part = read_shards(tmp_path / "run" / "generate" / folder)
        ids |= set(part.column("prompt_id").to_pylist()) if part is not None else set()
    import pyarrow.parquet as pq

    n_train = pq.read_table(tmp_path / "run" / "prompts" / "train.parquet").num_rows
    assert 2 <= len(ids) < n_train  # the first calls' rows were written, the stuck batch's were not
    assert not {m.group(3), m.group(4)} <= ids and first >= 0  # the batch named is one not wholly back
