"""`Responder`: a Ray Data callable class that answers (system, prompt) rows once, for the
evaluation and the benign-question pass."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from cst_ray.config.schema import EngineConfig
from cst_ray.generation.engine_actor import EngineActor

RESPONSE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("prompt_id", pa.string()),
        ("variant", pa.string()),
        ("system", pa.string()),
        ("prompt", pa.string()),
        ("response", pa.string()),
        ("model", pa.string()),
        ("prompt_tokens", pa.int32()),
        ("generated_tokens", pa.int32()),
        ("finish", pa.string()),
    ]
)


class Responder(EngineActor):
    """Ray Data callable: {id, prompt_id, variant, system, prompt} -> one answer per row."""

    def __init__(self, model_path: str, model_name: str, engine: EngineConfig, threads: int = 0,
                 trust_remote_code: bool = False, stream_rows: int = 0, rows_at_once: int = 0):
        super().__init__(model_path, model_name, engine, threads, trust_remote_code)
        self.stream_rows, self.rows_at_once = stream_rows, rows_at_once

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        yield from self.stream_groups(batch, self.answer, self.stream_rows, self.rows_at_once)

    def answer(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        convs = [[{"role": "system", "content": r["system"]}, {"role": "user", "content": r["prompt"]}] for r in rows]
        outs = self.engine.chat(convs)
        res = [dict(id=r["id"], prompt_id=r["prompt_id"], variant=r["variant"], system=r["system"],
                    prompt=r["prompt"], response=o.text, model=self.model_name, prompt_tokens=o.prompt_tokens,
                    generated_tokens=o.completion_tokens, finish=o.finish_reason) for r, o in zip(rows, outs)]
        return pa.Table.from_pylist(res, schema=RESPONSE_SCHEMA)
