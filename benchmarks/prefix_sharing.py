"""Packed training batches with each prompt once (prefix sharing) against both sequences whole.

    python benchmarks/prefix_sharing.py                              # SmolLM2-135M, fp32, 2 threads
    python benchmarks/prefix_sharing.py --autocast-bf16              # as train.precision: bf16-mixed
    python benchmarks/prefix_sharing.py --max-completion-length 48   # with train.max_completion_length

The pairs are built from committed answers (`results/runs/<run>/labelled_cst.jsonl`): for each
held-out prompt, the tuned model's answer under s1 (chosen) and under s0 (rejected), under the
s1 system prompt, plus its benign answers against a refusal: the lengths of CST pairs, no data
download. Both layouts run the same micro-batches of `--batch` pairs through
`PolicyLogProbs` forward and backward, alternating (A, B, A, B ...) so that drift in the
machine's speed falls on both. "whole": chosen and rejected packed end to end, each with its
prompt (the layout before prefix sharing); "shared": `batching.collate_packed`, each prompt once.
It checks that both give the same log-probs, then prints tokens and seconds per batch and the
ratio, measured in the same run. Last line: `RESULT shared_vs_whole_time=<ratio> tokens=<ratio>`.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench")


def pair_texts(run: Path) -> list[dict]:
    """(system, prompt, chosen, rejected) from one kept run's answers of its tuned model."""
    rows = [json.loads(x) for x in (run / "labelled_cst.jsonl").read_text().splitlines() if x.strip()]
    by = {(r["prompt_id"], r["variant"]): r for r in rows}
    refusal = next(r["response"] for r in rows if r["variant"] == "s1" and r["refusal"])
    pairs = []
    for (pid, variant), r in by.items():
        if variant == "s1" and (pid, "s0") in by:
            pairs.append({"id": pid, "system": r["system"], "prompt": r["prompt"], "chosen": r["response"],
                          "rejected": by[(pid, "s0")]["response"]})
        elif variant == "benign_s1":
            pairs.append({"id": pid, "system": r["system"], "prompt": r["prompt"], "chosen": r["response"],
                          "rejected": refusal})
    return pairs


def collate_whole(rows: list[dict]) -> dict:
    """The baseline layout: the B chosen, then the B rejected sequences, each with its prompt,
    packed end to end (`segments`)."""
    import torch

    ids, pos, mask, segments = [], [], [], [0]
    for key in ("chosen_ids", "rejected_ids"):
        for r in rows:
            seq = r["prompt_ids"] + r[key]
            ids += seq
            pos += range(len(seq))
            mask += [0] * len(r["prompt_ids"]) + [1] * len(r[key])
            segments.append(len(ids))
    return {"input_ids": torch.tensor([ids]), "position_ids": torch.tensor([pos]), "loss_mask": torch.tensor([mask]),
            "segments": tuple(segments)}


def step_seconds(policy, batch: dict, autocast: bool) -> tuple[float, "object"]:
    import torch

    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logps, _ = policy(**batch)
    logps.sum().backward()
    policy.zero_grad(set_to_none=True)
    return time.perf_counter() - t0, logps.detach()


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cst_ray.config.schema import ModelConfig
    from cst_ray.core.precision import cpu_summary
    from cst_ray.models.resolve import resolve_model
    from cst_ray.training.batching import collate_packed
    from cst_ray.training.logprobs import PolicyLogProbs
    from cst_ray.training.tokenize import tokenize_pairs

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--run", default="results/runs/default-epyc-bf16mixed-seed1")
    ap.add_argument("--batch", type=int, default=2, help="pairs a micro-batch (train.micro_batch_size)")
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--autocast-bf16", action="store_true", help="the forward under bf16 autocast (bf16-mixed)")
    ap.add_argument("--max-length", type=int, default=320)
    ap.add_argument("--max-completion-length", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="[bench] %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    path = resolve_model(ModelConfig(name_or_path=args.model))
    tok = AutoTokenizer.from_pretrained(path)
    toks, _ = tokenize_pairs(tok, pair_texts(ROOT / args.run), max_length=args.max_length,
                             max_completion_length=args.max_completion_length)
    batches = [toks[i:i + args.batch] for i in range(0, len(toks), args.batch)][: args.batches]
    policy = PolicyLogProbs(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), packed=True).train()
    log.info("%s; %s, %d threads, %d batches of %d pairs from %s, max_completion_length %d, %s", cpu_summary(), args.model,
             args.threads, len(batches), args.batch, args.run, args.max_completion_length,
             "bf16 autocast" if args.autocast_bf16 else "fp32")

    times: dict[str, list[float]] = {"whole": [], "shared": []}
    tokens = {"whole": 0, "shared": 0}
    worst = 0.0
    step_seconds(policy, collate_packed(batches[0]), args.autocast_bf16)  # warm-up, not timed
    for rows in batches:
        got = {}
        for name, collate in (("whole", collate_whole), ("shared", collate_packed)):
            b = collate(rows)
            tokens[name] += b["input_ids"].numel()
            seconds, got[name] = step_seconds(policy, b, args.autocast_bf16)
            times[name].append(seconds)
        worst = max(worst, float((got["whole"] - got["shared"]).abs().max()))
    tol = 0.5 if args.autocast_bf16 else 1e-3
    if worst > tol:
        raise SystemExit(f"log-probs differ between the layouts by {worst:.4g} (> {tol}): not the same computation")
    w, s = statistics.median(times["whole"]), statistics.median(times["shared"])
    log.info("largest log-prob difference between the layouts: %.3g (sum over a sequence's tokens)", worst)
    for name, med in (("whole", w), ("shared", s)):
        log.info("%-6s %6d tokens, median %.3f s a micro-batch forward+backward, %.1f tok/s", name, tokens[name], med,
                 tokens[name] / sum(times[name]))
    log.info("RESULT shared_vs_whole_time=%.3f tokens=%.3f", s / w, tokens["shared"] / tokens["whole"])


if __name__ == "__main__":
    main()
