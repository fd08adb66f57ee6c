import torch

from cst_ray.training.batching import collate_pairs
from cst_ray.training.logprobs import (
    PolicyLogProbs,
    chunked_token_logps,
    naive_token_logps,
)


def test_chunked_matches_naive_and_gradcheck():
    torch.manual_seed(0)
    h = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 50, (37,))
    assert torch.allclose(chunked_token_logps(h, w, t, 8), naive_token_logps(h, w, t))
    assert torch.autograd.gradcheck(lambda a, b: chunked_token_logps(a, b, t, 8), (h, w))


def test_chunked_under_bf16_autocast_matches_autocast_autograd():
    """train.precision: bf16-mixed. fp32 hidden states and head, the forward under CPU autocast:
    the head's matmul runs in bf16 (as autocast's own matmul), and the backward -- which autograd
    runs without autocast -- uses the same bf16 matmul rather than failing on mixed dtypes."""
    torch.manual_seed(0)
    h0, w0 = torch.randn(37, 16), torch.randn(50, 16)
    t = torch.randint(0, 50, (37,))
    g = torch.randn(37)
    grads = []
    for fn in (lambda a, b: chunked_token_logps(a, b, t, 8), lambda a, b: naive_token_logps_bf16(a, b, t)):
        h, w = h0.clone().requires_grad_(), w0.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fn(h, w)
        assert out.dtype == torch.float32
        (out * g).sum().backward()
        assert h.grad.dtype == w.grad.dtype == torch.float32
        grads.append((out.detach(), h.grad, w.grad))
    (o1, gh1, gw1), (o2, gh2, gw2) = grads
    assert torch.allclose(o1, o2, atol=1e-4)  # the same bf16 logits, fp32 log-softmax
    assert torch.allclose(gh1, gh2, rtol=0.02, atol=0.02) and torch.allclose(gw1, gw2, rtol=0.02, atol=0.02)
    with torch.no_grad():  # and bf16, not fp32, is what it computed
        fp32 = naive_token_logps(h0, w0, t)
    assert not torch.allclose(o1, fp32, atol=1e-4)


def naive_token_logps_bf16(h, w, t):
    """What autocast does with a plain head: bf16 matmul, log-softmax in fp32."""
    logits = (h @ w.t()).float()
    return logits.log_softmax(-1).gather(1, t[:, None]).squeeze(1)


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


def _pair_rows(tokenizer, n=3):
    from cst_ray.training.tokenize import tokenize_pair

    # chosen and rejected of very different lengths, as in CST (a refusal vs a full answer)
    return [tokenize_pair(tokenizer, f"system {i}", f"question {i} " * (i + 1), "I can't help. " * (1 + i),
                          "Sure, here is how. " * (6 - 2 * i), max_length=256, min_response_tokens=1) for i in range(n)]


def test_packed_forward_equals_padded_values_and_gradients(tiny_model_path, tokenizer):
    """One packed row of pairs, each prompt once (the rejected answer attends to its prompt and
    itself, not to the chosen answer; positions as if it followed the prompt alone) gives the
    padded batch's log-probs and the same parameter gradients (fp32)."""
    from transformers import AutoModelForCausalLM

    from cst_ray.training.batching import batch_tokens, collate_packed

    torch.manual_seed(0)
    rows = _pair_rows(tokenizer)
    padded_model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    packed_model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    padded, packed = PolicyLogProbs(padded_model, chunk=5), PolicyLogProbs(packed_model, chunk=5, packed=True)
    assert packed_model.config._attn_implementation.startswith("cst_packed_")

    b = collate_pairs(rows, tokenizer.pad_token_id)
    p = collate_packed(rows)
    prompts = sum(len(r["prompt_ids"]) for r in rows)
    assert p["input_ids"].shape == (1, batch_tokens(b) - prompts) and batch_tokens(p) == batch_tokens(b) - prompts
    assert len(p["shared"]) == len(rows) and sum(sum(x[1:]) for x in p["shared"]) == p["input_ids"].shape[1]
    assert p["target_ids"].shape == p["pred_index"].shape == (int(b["loss_mask"].sum()),)

    lp_pad, n_pad = padded(**b)
    lp_pack, n_pack = packed(**p)
    assert n_pack.tolist() == n_pad.tolist()
    assert torch.allclose(lp_pack, lp_pad, rtol=1e-5, atol=1e-5), (lp_pack, lp_pad)

    weights = torch.linspace(-1, 1, lp_pad.shape[0])  # an arbitrary loss over the sequences
    (lp_pad * weights).sum().backward()
    (lp_pack * weights).sum().backward()
    grads_pad = dict(padded_model.named_parameters())
    for name, param in packed_model.named_parameters():
        want = grads_pad[name].grad  # a prompt's gradient is summed in one place, not two: fp32 rounding
        assert (param.grad - want).abs().max() <= 1e-5 * want.abs().max() + 1e-8, name

    # the same packed model still runs padded batches (generation, evaluation) unchanged
    lp_again, _ = packed(**b)
    assert torch.allclose(lp_again, lp_pad, rtol=1e-5, atol=1e-5)


def test_packed_attention_does_not_cross_sequences(tiny_model_path, tokenizer):
    """A sequence's log-probs do not depend on what is packed before it."""
    from transformers import AutoModelForCausalLM

    from cst_ray.training.batching import collate_packed

    rows = _pair_rows(tokenizer)
    policy = PolicyLogProbs(AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32), packed=True)
    with torch.no_grad():
        alone, _ = policy(**collate_packed(rows[2:]))
        together, _ = policy(**collate_packed(rows))
    # chosen of row 2 is sequence 2 of 6 when packed with rows 0-1, rejected is sequence 5
    assert torch.allclose(together[[2, 5]], alone, rtol=1e-5, atol=1e-5)


def test_packed_forward_refuses_a_model_that_ignores_the_segments(tiny_model_path, tokenizer):
    """A model whose attention never receives the segments would attend across sequences: error."""
    import pytest
    from transformers import AutoModelForCausalLM

    from cst_ray.training.batching import collate_packed

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    policy = PolicyLogProbs(model, packed=True)
    model.config._attn_implementation = "sdpa"  # as a model with its own attention wiring would behave
    with pytest.raises(RuntimeError, match="train.packing: false"):
        policy(**collate_packed(_pair_rows(tokenizer)))
