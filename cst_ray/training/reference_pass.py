"""Reference log-probs as a Ray Data stage.

`ReferenceLogProbs` is a callable class for `map_batches`: it tokenizes each pair exactly as
training does (`tokenize_pair`, same max length) and adds the frozen reference model's summed
response log-probs under the pair's own system prompt:
    ref_chosen_logps, ref_rejected_logps   (null where the pair does not fit max_length)
Training with `train.reference: precomputed` then skips the reference forward pass.

At step 1 the policy is the reference, so the first DPO loss is log 2 only if this stage
computes what the training step computes for the policy. What it shares with the step: the
model as a plain `from_pretrained` loads it (ZeRO-3 training loads the same one, RoPE buffers
in fp32 included: `training.loop.fp32_buffer_names`), `PolicyLogProbs`, and the collation
(`packed`, from `train.packing`). What must be set to match: `dtype` (`pairs.reference_dtype`)
must be the training precision, `bfloat16` for `train.precision: bf16` -- a float32 reference
against a bf16 policy is a reference from another model. What cannot match: the training's
micro-batches. Ray Data hands this class blocks of pairs, while training batches all pairs by
seed, worker count and micro-batch size, so the stage packs `micro_batch` pairs of its own.
Where a bf16 matmul's rounding does not depend on the number of rows it runs on (the CPUs this
project is tested on) that gives the step's log-probs bit for bit; where it does (cuBLAS, oneDNN
on some CPUs) they differ by bf16 rounding, and `train.reference: worker_precompute`, which
scores the training's own micro-batches, is the exact choice. Training reports the difference
at step 1 (`reference/step1_max_abs_diff`) and warns when it is larger than fp32 noise.
"""

from __future__ import annotations

import pyarrow as pa

from cst_ray.core.precision import resolve_dtype
from cst_ray.core.ray_env import apply_worker_env
from cst_ray.data.pairs import PAIR_SCHEMA
from cst_ray.engines.base import has_cuda, set_cpu_threads
from cst_ray.training.tokenize import tokenize_pair

REF_SCHEMA = pa.schema(list(PAIR_SCHEMA) + [("ref_chosen_logps", pa.float64()), ("ref_rejected_logps", pa.float64()),
                                             ("prompt_tokens", pa.int64()), ("generated_tokens", pa.int64())])


class ReferenceLogProbs:
    def __init__(self, model_path: str, max_length: int, min_response_tokens: int, dtype: str = "float32",
                 threads: int = 0, micro_batch: int = 8, trust_remote_code: bool = False,
                 packed: bool = True, autocast_bf16: bool = False, max_completion_length: int = 0):
        apply_worker_env()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from cst_ray.training.logprobs import PolicyLogProbs  # noqa: PLC0415 (imports torch; the stage stays light)

        self.device = "cuda" if has_cuda() else "cpu"
        if self.device == "cpu":
            set_cpu_threads(threads)
        self.tok = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, resolve_dtype(dtype, self.device)),
                                                     trust_remote_code=trust_remote_code).to(self.device).eval()
        self.policy = PolicyLogProbs(model, packed=packed)
        self.packed = packed  # how to collate for that policy
        self.max_length, self.min_resp, self.micro = max_length, min_response_tokens, micro_batch
        self.max_completion = max_completion_length
        self.autocast_bf16 = autocast_bf16  # train.precision: bf16-mixed -- the policy's forward

    def __call__(self, batch: pa.Table) -> pa.Table:
        import torch

        from cst_ray.training.batching import collate, pair_length, to_device  # noqa: PLC0415 (imports torch)

        rows = batch.to_pylist()
        toks = [tokenize_pair(self.tok, r["system"], r["prompt"], r["chosen"], r["rejected"],
                              max_length=self.max_length, min_response_tokens=self.min_resp,
                              max_completion_length=self.max_completion) for r in rows]
        chosen: list[float | None] = [None] * len(rows)
        rejected: list[float | None] = [None] * len(rows)
        order = sorted((i for i, t in enumerate(toks) if t is not None), key=lambda i: pair_length(toks[i]))
        with torch.inference_mode(), torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.autocast_bf16):
            for s in range(0, len(order), self.micro):
                idx = order[s : s + self.micro]
                b = collate([toks[i] for i in idx], self.tok.pad_token_id, self.packed)
                logps, _ = self.policy(**to_device(b, self.device))
                logps = logps.double().cpu().tolist()
                for j, i in enumerate(idx):
                    chosen[i], rejected[i] = logps[j], logps[len(idx) + j]
        out = {f: [r[f] for r in rows] for f in PAIR_SCHEMA.names}
        out["ref_chosen_logps"] = chosen
        out["ref_rejected_logps"] = rejected
        out["prompt_tokens"] = [pair_length(t) if t else 0 for t in toks]
        out["generated_tokens"] = [0] * len(rows)
        return pa.Table.from_pydict(out, schema=REF_SCHEMA)
