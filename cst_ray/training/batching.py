"""Deterministic, length-grouped batching of tokenized pairs, and collation.

The order of pairs is a pure function of (seed, epoch), so a resumed run that restores the
global step sees exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import random

import torch  # noqa: TID253 (runs only in training workers)


def pair_length(row: dict) -> int:
    return len(row["prompt_ids"]) + max(len(row["chosen_ids"]), len(row["rejected_ids"]))


def epoch_batches(lengths: list[int], global_batch: int, seed: int, epoch: int, group_factor: int = 8) -> list[list[int]]:
    """Global batches of `global_batch` indices for one epoch.

    Length grouping: shuffle, cut into mega-batches of `group_factor` global batches, sort each
    by length (so a batch holds similar lengths and little padding), then shuffle the batches.
    The tail that does not fill a global batch is left out of this epoch (it is reshuffled
    into the next one); `dropped_per_epoch` reports how many.
    """
    rng = random.Random(seed * 100_003 + epoch)
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    n_full = len(idx) // global_batch * global_batch
    idx = idx[:n_full]
    mega = global_batch * group_factor
    batches = []
    for s in range(0, len(idx), mega):
        group = sorted(idx[s : s + mega], key=lambda i: lengths[i])
        batches.extend(group[j : j + global_batch] for j in range(0, len(group), global_batch))
    rng.shuffle(batches)
    return batches


def dropped_per_epoch(n: int, global_batch: int) -> int:
    return n % global_batch


def micro_batches(global_batch: list[int], rank: int, micro_batch: int, grad_accum: int) -> list[list[int]]:
    """Rank `rank`'s micro-batches of one global batch, in the order its step runs them: the
    rank's slice of `micro_batch * grad_accum` indices, cut into `grad_accum` micro-batches.
    The training step and the workers' reference pass both take their batches from here."""
    per_rank = micro_batch * grad_accum
    local = global_batch[rank * per_rank : (rank + 1) * per_rank]
    return [local[m * micro_batch : (m + 1) * micro_batch] for m in range(grad_accum)]


def _sequences(rows: list[dict]):
    """(token ids, loss mask) of every sequence of a batch: the B chosen, then the B rejected."""
    for key in ("chosen_ids", "rejected_ids"):
        for r in rows:
            p, resp = r["prompt_ids"], r[key]
            yield p + resp, [0] * len(p) + [1] * len(resp)


def collate_pairs(rows: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Chosen and rejected of B pairs as one batch of 2B sequences (chosen first).

    Returns input_ids [2B, T], attention_mask [2B, T], loss_mask [2B, T] (1 on response tokens,
    including the response's EOS even when pad == EOS: the mask comes from lengths).
    """
    seqs, masks = zip(*_sequences(rows))
    T = max(len(s) for s in seqs)
    n = len(seqs)
    input_ids = torch.full((n, T), pad_id, dtype=torch.long)
    attention = torch.zeros((n, T), dtype=torch.long)
    loss_mask = torch.zeros((n, T), dtype=torch.long)
    for i, (s, m) in enumerate(zip(seqs, masks)):
        input_ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        attention[i, : len(s)] = 1
        loss_mask[i, : len(m)] = torch.tensor(m, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention, "loss_mask": loss_mask}


def collate_packed(rows: list[dict]) -> dict:
    """B pairs in one row, no padding, each prompt once: prompt, chosen, rejected of pair 1, then
    of pair 2, ... (prefix sharing: the rejected answer attends to its pair's prompt, which is
    not repeated, and never to the chosen answer; positions continue from the prompt's, as if
    the rejected answer followed the prompt alone). Exactly the log-probs of the padded batch,
    with ~2P fewer tokens a pair than packing both sequences whole (P = prompt length).

    Returns input_ids [1, T], position_ids [1, T], shared: ((start, P, C, R), ...) per pair, and
    the M response tokens whose log-probs count: pred_index [M] (the position whose logits
    predict it), target_ids [M], seq_index [M] (pair i's chosen is sequence i, its rejected
    sequence B + i: the order of `collate_pairs`). T = sum of P + C + R.
    """
    ids: list[int] = []
    pos: list[int] = []
    shared = []
    pred: list[int] = []
    target: list[int] = []
    seq: list[int] = []
    n = len(rows)
    for i, r in enumerate(rows):
        p, c, rej = r["prompt_ids"], r["chosen_ids"], r["rejected_ids"]
        s = len(ids)
        shared.append((s, len(p), len(c), len(rej)))
        ids += p + c + rej
        pos += list(range(len(p) + len(c))) + list(range(len(p), len(p) + len(rej)))
        # chosen token j is predicted at s + P - 1 + j; rejected token 0 at the prompt's last
        # position, rejected token j > 0 at the position of rejected token j - 1
        pred += range(s + len(p) - 1, s + len(p) - 1 + len(c))
        first_rej = s + len(p) + len(c)
        pred += ([s + len(p) - 1] + list(range(first_rej, first_rej + len(rej) - 1))) if rej else []
        target += c + rej
        seq += [i] * len(c) + [n + i] * len(rej)
    return {"input_ids": torch.tensor([ids], dtype=torch.long), "position_ids": torch.tensor([pos], dtype=torch.long),
            "shared": tuple(shared), "pred_index": torch.tensor(pred, dtype=torch.long),
            "target_ids": torch.tensor(target, dtype=torch.long), "seq_index": torch.tensor(seq, dtype=torch.long)}


def collate(rows: list[dict], pad_id: int, packed: bool) -> dict:
    return collate_packed(rows) if packed else collate_pairs(rows, pad_id)


def batch_tokens(batch: dict) -> int:
    """Non-padding tokens of a collated batch."""
    return int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
