"""Issue 30: the fused log-prob path applies what each family's output head applies (bias,
logit scale, final softcap), values and gradients, padded and packed. Tiny random models are
built offline from each family's config; heads with a bias get random bias values, and
softcapped ones a head scaled so that the logits reach the cap, as a trained model's do."""

import pytest
import torch

from cst_ray.training.logprobs import HeadTransform, PolicyLogProbs, chunked_token_logps, naive_token_logps

SMALL = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
             vocab_size=97, max_position_embeddings=128, head_dim=8, pad_token_id=0, bos_token_id=1, eos_token_id=2)
FAMILIES = ["llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "gemma3_text", "phi", "phi3", "cohere", "cohere2",
            "granite", "olmo2", "gpt_neox", "stablelm"]


def _model(family: str):
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(family, **SMALL)
    if family == "gpt_neox":
        cfg.rotary_pct = 1.0
    if family == "cohere2":
        cfg.layer_types = ["full_attention"]
    if family == "granite":
        cfg.logits_scaling = 8.0  # Granite 3 ships 8 or 16; the default 1.0 would test nothing
    if family == "gemma3_text":
        cfg.final_logit_softcapping = 30.0
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).float()
    head = model.get_output_embeddings()
    with torch.no_grad():
        if getattr(head, "bias", None) is not None:
            head.bias.normal_(0, 1.0)
        if getattr(cfg, "final_logit_softcapping", None):
            head.weight.mul_(40.0)  # logits reach the cap
    return model


def _batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 97, (2, 12), generator=g)
    attn = torch.ones_like(ids)
    attn[1, :3] = 0  # left padding on the second row
    loss = torch.zeros_like(ids)
    loss[:, 7:] = 1
    return ids, attn, loss


def _own_logps(model, ids, attn, loss):
    logits = model(input_ids=ids, attention_mask=attn).logits.float()
    lp = logits[:, :-1].log_softmax(-1).gather(2, ids[:, 1:, None]).squeeze(2)
    return (lp * loss[:, 1:]).sum(1)


def test_head_transform_in_the_fused_kernel_matches_naive_and_gradcheck():
    torch.manual_seed(0)
    h = torch.randn(23, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(30, 8, dtype=torch.float64, requires_grad=True)
    b = torch.randn(30, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 30, (23,))
    for head in (HeadTransform(), HeadTransform(scale=0.0625), HeadTransform(scale=0.5, softcap=3.0)):
        assert torch.allclose(chunked_token_logps(h, w, t, 7, bias=b, head=head), naive_token_logps(h, w, t, b, head))
        assert torch.autograd.gradcheck(lambda x, y, z, hd=head: chunked_token_logps(x, y, t, 7, bias=z, head=hd),
                                        (h, w, b))


@pytest.mark.parametrize("family", FAMILIES)
def test_fused_logps_and_gradients_equal_the_models_own(family):
    model = _model(family)
    ids, attn, loss = _batch()
    want = _own_logps(model, ids, attn, loss)
    want.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    got, _ = PolicyLogProbs(model, chunk=5)(ids, attn, loss)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (family, got, want)
    got.sum().backward()
    for n, p in model.named_parameters():
        if n in grads:
            assert torch.allclose(p.grad, grads[n], atol=1e-4, rtol=1e-3), (family, n)


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma2", "phi", "cohere", "granite"])
def test_packed_rows_apply_the_same_head(family):
    """The two sequences of `_batch` end to end in one row (positions restart, attention kept
    inside each): the log-probs of the model's own padded forward."""
    model = _model(family)
    ids, attn, loss = _batch()
    want = _own_logps(model, ids, attn, loss)
    rows = [ids[0], ids[1, 3:]]  # the second row without its left padding
    masks = [loss[0], loss[1, 3:]]
    packed = torch.cat(rows)[None]
    pos = torch.cat([torch.arange(len(r)) for r in rows])[None]
    got, _ = PolicyLogProbs(model, chunk=5, packed=True)(packed, loss_mask=torch.cat(masks)[None], position_ids=pos,
                                                         segments=(0, len(rows[0]), len(rows[0]) + len(rows[1])))
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (family, got, want)


def test_a_head_the_fused_path_does_not_reproduce_is_refused():
    """Never silently wrong: a config key that changes the logits in a way the fused path does not
    apply (Falcon-H1's lm_head_multiplier, MiniCPM's width scaling) stops training, naming it."""
    model = _model("llama")
    model.config.lm_head_multiplier = 0.5
    with pytest.raises(ValueError, match="model family 'llama' has config lm_head_multiplier"):
        PolicyLogProbs(model)
    model = _model("llama")
    model.lm_head = torch.nn.Sequential(model.lm_head)  # not a linear layer

    class Wrapped(torch.nn.Module):
        pass
    model.get_output_embeddings = lambda: Wrapped()
    with pytest.raises(ValueError, match="an output head of type Wrapped"):
        PolicyLogProbs(model)
