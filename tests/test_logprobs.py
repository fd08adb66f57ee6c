import torch

from cst_ray.training.batching import collate_pairs
from cst_ray.training.logprobs import PolicyLogProbs, chunked_token_logps, naive_token_logps


def test_chunked_matches_naive_and_gradcheck():
    torch.manual_seed(0)
    h = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 50, (37,))
    assert torch.allclose(chunked_token_logps(h, w, t, 8), naive_token_logps(h, w, t))
    assert torch.autograd.gradcheck(lambda a, b: chunked_token_logps(a, b, t, 8), (h, w))


def test_policy_logprobs_equal_full_logits(tiny_model_path, tokenizer):
    from transformers import AutoModelForCausalLM

    from cst_ray.training.tokenize import tokenize_pair

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    rows = [tokenize_pair(tokenizer, "sys", f"question {i}", "answer " * (i + 1), "no " * (3 - i), max_length=128)
            for i in range(2)]
    b = collate_pairs(rows, tokenizer.pad_token_id)
    logps, ntok = PolicyLogProbs(model, chunk=7)(b["input_ids"], b["attention_mask"], b["loss_mask"])
    logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.float()
    lp = logits[:, :-1].log_softmax(-1).gather(2, b["input_ids"][:, 1:, None]).squeeze(2)
    expected = (lp * b["loss_mask"][:, 1:]).sum(1)
    assert torch.allclose(logps, expected, rtol=1e-4, atol=1e-4)
    assert ntok.tolist() == b["loss_mask"].sum(1).tolist()
