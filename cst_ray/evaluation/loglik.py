"""Log-likelihoods of continuations under a causal LM, one padded forward per batch: the one way
the evaluation scores text (capability's multiple choice, the extra tasks' chosen vs rejected).

A sequence is (token ids, n_context): the continuation is ids[n_context:], each of its tokens
scored given everything before it. Sequences run shortest first in batches of `batch_size`,
right-padded, and the logits are read in fp32.
"""

from __future__ import annotations


def continuation_logps(model, seqs: list[tuple[list[int], int]], pad_id: int, batch_size: int = 16) -> list:
    """-> per sequence, a 1-D fp32 tensor of log p(token | the tokens before it) over its
    continuation (in the order of `seqs`; n_context >= 1, so the first token is never scored)."""
    import torch

    out: list = [None] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda k: len(seqs[k][0]))
    with torch.no_grad():
        for s in range(0, len(order), batch_size):
            chunk = order[s:s + batch_size]
            T = max(len(seqs[k][0]) for k in chunk)
            ids = torch.full((len(chunk), T), pad_id, dtype=torch.long)
            att = torch.zeros((len(chunk), T), dtype=torch.long)
            for b, k in enumerate(chunk):
                x = seqs[k][0]
                ids[b, : len(x)] = torch.tensor(x)
                att[b, : len(x)] = 1
            logits = model(input_ids=ids.to(model.device), attention_mask=att.to(model.device)).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(2, ids[:, 1:, None].to(model.device)).squeeze(2)
            for b, k in enumerate(chunk):
                x, n_ctx = seqs[k]
                out[k] = logp[b, n_ctx - 1 : len(x) - 1].cpu()
    return out
