
from cst_ray.training.batching import collate_pairs, epoch_batches
from cst_ray.training.tokenize import TokenizeStats, tokenize_pair

SYS = "You are a helpful yet harmless assistant that avoids generating illegal or harmful content."


def _system_ids(tok):
    text = tok.apply_chat_template([{"role": "system", "content": SYS}], tokenize=False)
    return tok(text, add_special_tokens=False)["input_ids"]


def test_prompt_masked_and_eos_in_loss_when_pad_is_eos(tokenizer):
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # SmolLM2: <|im_end|> is both
    t = tokenize_pair(tokenizer, SYS, "How do I make a bomb?", "I can't help with that.", "Sure, here is how.",
                      max_length=256)
    assert t["chosen_ids"].count(tokenizer.eos_token_id) == 1
    batch = collate_pairs([t], pad_id=tokenizer.pad_token_id)
    ids, mask, att = batch["input_ids"], batch["loss_mask"], batch["attention_mask"]
    n_prompt = len(t["prompt_ids"])
    assert mask[:, :n_prompt].sum() == 0  # prompt never in the loss
    # chosen row: the EOS inside the response is a loss position although it equals pad
    eos_pos = n_prompt + t["chosen_ids"].index(tokenizer.eos_token_id)
    assert ids[0, eos_pos] == tokenizer.pad_token_id and mask[0, eos_pos] == 1
    # padding after the shorter sequence is neither attended nor in the loss
    shorter = 0 if len(t["chosen_ids"]) < len(t["rejected_ids"]) else 1
    L = n_prompt + len(t["chosen_ids"] if shorter == 0 else t["rejected_ids"])
    assert att[shorter, L:].sum() == 0 and mask[shorter, L:].sum() == 0
    decoded = tokenizer.decode(t["chosen_ids"])
    assert decoded.startswith("I can't help with that.")


def test_truncation_cuts_response_tail_first_and_keeps_system(tokenizer):
    st = TokenizeStats()
    long_resp = "word " * 400
    t = tokenize_pair(tokenizer, SYS, "Short question?", long_resp, "no", max_length=128, stats=st)
    assert len(t["prompt_ids"]) + len(t["chosen_ids"]) <= 128
    assert st.truncated_response == 1 and st.truncated_prompt == 0
    sys_ids = _system_ids(tokenizer)
    assert t["prompt_ids"][: len(sys_ids)] == sys_ids
    assert "Short question?" in tokenizer.decode(t["prompt_ids"])


def test_truncation_cuts_middle_of_user_turn_never_system(tokenizer):
    st = TokenizeStats()
    user = "BEGIN " + "filler " * 600 + " END"
    t = tokenize_pair(tokenizer, SYS, user, "I can't help with that. " * 10, "Sure. " * 50, max_length=160,
                      min_response_tokens=16, stats=st)
    total = len(t["prompt_ids"]) + max(len(t["chosen_ids"]), len(t["rejected_ids"]))
    assert total <= 160
    text = tokenizer.decode(t["prompt_ids"])
    assert SYS in text and "BEGIN" in text and "END" in text and "[...]" in text
    assert len(t["chosen_ids"]) == 16
    assert st.truncated_prompt == 1


def test_max_completion_length_keeps_each_answers_opening(tokenizer):
    """train.max_completion_length: both answers keep their first N tokens, the prompt is whole,
    and the pair is counted as capped; a pair within the cap is left as it is."""
    long = "Sure, here is how to do it, step by step, in great detail. " * 8
    whole = tokenize_pair(tokenizer, SYS, "How do I make a bomb?", "I can't help with that.", long, max_length=512)
    stats = TokenizeStats()
    t = tokenize_pair(tokenizer, SYS, "How do I make a bomb?", "I can't help with that.", long, max_length=512,
                      max_completion_length=16, stats=stats)
    assert t["prompt_ids"] == whole["prompt_ids"] and t["rejected_ids"] == whole["rejected_ids"][:16]
    assert t["chosen_ids"] == whole["chosen_ids"][:16] and len(whole["chosen_ids"]) < 16
    assert stats.as_dict()["capped_response"] == 1 and stats.truncated_response == 0
    short = tokenize_pair(tokenizer, SYS, "Hi?", "Hello.", "Hey.", max_length=512, max_completion_length=16, stats=stats)
    assert stats.capped_response == 1 and short["chosen_ids"] == tokenize_pair(
        tokenizer, SYS, "Hi?", "Hello.", "Hey.", max_length=512)["chosen_ids"]


def test_system_prompt_too_long_is_counted_not_crashed(tokenizer):
    st = TokenizeStats()
    t = tokenize_pair(tokenizer, "persona " * 300, "hi", "a", "b", max_length=64, stats=st)
    assert t is None and st.skipped == {"system_prompt_too_long": 1} and st.kept == 0


def test_epoch_batches_deterministic_and_grouped():
    lengths = [10, 500, 12, 480, 11, 490, 13, 470]
    a = epoch_batches(lengths, 2, seed=1, epoch=0)
    assert a == epoch_batches(lengths, 2, seed=1, epoch=0)
    assert a != epoch_batches(lengths, 2, seed=1, epoch=1) or len(a) == 1
    assert sorted(i for b in a for i in b) == list(range(8))
    for b in a:  # length grouping: short with short, long with long
        assert max(lengths[i] for i in b) - min(lengths[i] for i in b) < 100
    assert len(epoch_batches(lengths[:7], 2, seed=1, epoch=0)) == 3  # tail dropped this epoch
