"""Chat-template tokenization of preference pairs.

For a pair (system, prompt, chosen, rejected):
  prompt_ids   = template([system, user], add_generation_prompt=True)
  chosen_ids   = template([system, user, assistant=chosen])  minus the prompt prefix
  rejected_ids = likewise for rejected
The loss sees only response tokens (the prompt is masked). The response keeps the
end-of-turn/EOS token, so the model learns to stop, even when pad == EOS: masks are built
from lengths, never from pad-token positions.

Truncation never removes the system prompt (the conditioning signal CST depends on):
  0. with `max_completion_length`, keep each response's first tokens only (TRL's
     `max_completion_length`: refusal or compliance shows in an answer's opening, and the
     training step's cost is its tokens);
  1. cut the tails of the responses;
  2. if the prompt alone leaves fewer than `min_response_tokens`, cut the middle of the
     user turn (keep its head and tail) and keep `min_response_tokens` of each response;
  3. if the system prompt and template alone do not fit, skip the row and count it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cst_ray.models.chat import NotAPrefixError, prompt_ids, response_ids

ELLIPSIS = " [...] "


@dataclass
class TokenizeStats:
    rows: int = 0
    kept: int = 0
    capped_response: int = 0
    truncated_response: int = 0
    truncated_prompt: int = 0
    skipped: dict = field(default_factory=dict)
    prompt_len_sum: int = 0
    prompt_len_max: int = 0
    chosen_len_sum: int = 0
    rejected_len_sum: int = 0
    total_len_max: int = 0

    def as_dict(self) -> dict:
        k = max(self.kept, 1)
        return {
            "rows": self.rows, "kept": self.kept, "skipped": dict(self.skipped),
            "capped_response": self.capped_response, "truncated_response": self.truncated_response, "truncated_prompt": self.truncated_prompt,
            "prompt_tokens_mean": round(self.prompt_len_sum / k, 1), "prompt_tokens_max": self.prompt_len_max,
            "chosen_tokens_mean": round(self.chosen_len_sum / k, 1),
            "rejected_tokens_mean": round(self.rejected_len_sum / k, 1), "pair_tokens_max": self.total_len_max,
        }


def _cut_middle(tok, text: str, drop: int) -> str:
    ids = tok(text, add_special_tokens=False)["input_ids"]
    keep = max(len(ids) - drop, 0)
    head = keep // 2
    tail = keep - head
    return tok.decode(ids[:head]) + ELLIPSIS + (tok.decode(ids[len(ids) - tail:]) if tail else "")


def tokenize_pair(tok, system: str, prompt: str, chosen: str, rejected: str, *, max_length: int,
                  min_response_tokens: int = 16, max_completion_length: int = 0,
                  stats: TokenizeStats | None = None) -> dict | None:
    """-> {prompt_ids, chosen_ids, rejected_ids} (response ids exclude the prompt), or None if the
    system prompt alone does not fit (counted in `stats.skipped`). `max_completion_length` > 0:
    each response's first that many tokens (a pair that loses any counts in `capped_response`)."""
    stats = stats if stats is not None else TokenizeStats()
    stats.rows += 1
    p = prompt_ids(tok, system, prompt)
    c = response_ids(tok, system, prompt, chosen)
    r = response_ids(tok, system, prompt, rejected)
    if max_completion_length and max(len(c), len(r)) > max_completion_length:
        stats.capped_response += 1
        c, r = c[:max_completion_length], r[:max_completion_length]
    longest = max(len(c), len(r))
    if len(p) + longest > max_length:
        budget = max_length - len(p)
        if budget >= min_response_tokens:
            stats.truncated_response += 1
            c, r = c[:budget], r[:budget]
        else:
            resp = min(longest, min_response_tokens)
            if longest > resp:
                stats.truncated_response += 1
            c, r = c[:resp], r[:resp]
            target = max_length - max(len(c), len(r))
            user = prompt
            for _ in range(4):  # decode/encode round trips can shift a few tokens
                over = len(p) - target
                if over <= 0:
                    break
                user = _cut_middle(tok, user, over + 8)
                p = prompt_ids(tok, system, user)
            if len(p) > target:
                stats.skipped["system_prompt_too_long"] = stats.skipped.get("system_prompt_too_long", 0) + 1
                return None
            stats.truncated_prompt += 1
    stats.kept += 1
    stats.prompt_len_sum += len(p)
    stats.prompt_len_max = max(stats.prompt_len_max, len(p))
    stats.chosen_len_sum += len(c)
    stats.rejected_len_sum += len(r)
    stats.total_len_max = max(stats.total_len_max, len(p) + max(len(c), len(r)))
    return {"prompt_ids": p, "chosen_ids": c, "rejected_ids": r}


def tokenize_pairs(tok, rows: list[dict], *, max_length: int, min_response_tokens: int = 16,
                   max_completion_length: int = 0) -> tuple[list[dict], TokenizeStats]:
    """Tokenize pair rows (system, prompt, chosen, rejected, id[, ref_*_logps]); keeps other fields."""
    stats = TokenizeStats()
    out = []
    for row in rows:
        try:
            t = tokenize_pair(tok, row["system"], row["prompt"], row["chosen"], row["rejected"],
                              max_length=max_length, min_response_tokens=min_response_tokens,
                              max_completion_length=max_completion_length, stats=stats)
        except NotAPrefixError as e:
            raise NotAPrefixError(f"{getattr(tok, 'name_or_path', 'the model')}, pair {row['id']}: {e}; such a template "
                                  f"cannot mask the prompt out of the loss (set model.chat_template to one that "
                                  f"renders the prompt unchanged)") from None
        if t is None:
            continue
        t["id"] = row["id"]
        for k in ("ref_chosen_logps", "ref_rejected_logps"):
            if k in row and row[k] is not None:
                t[k] = float(row[k])
        out.append(t)
    return out, stats
