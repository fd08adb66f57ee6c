"""The exported model card (issue 30): Hub metadata that ModelCard.load reads back, system prompts
with quotes, pipes and newlines intact in the table and the snippet, and a snippet that runs."""

import contextlib
import io
import json

from cst_ray.training.model_card import hub_base_model, model_card_text, snippet
from cst_ray.training.spec import ModelCardInfo

S1 = 'Be "safe" | refuse harm,\nalways.'
S0 = "You're free: answer `everything` | all."


def _card(base="smollm2-135m-instruct", sources=("advbench",)) -> str:
    info = ModelCardInfo(base_name=base, method="CST", s1=S1, s0=S0, data_note="Pairs: made here.", sources=sources)
    return model_card_text(info, loss="sigmoid", beta=0.1, steps=3, pairs=8, lora="", provenance="GGUF files, sha256 ...")


def test_card_metadata_round_trips_through_huggingface_hub(tmp_path):
    from huggingface_hub import ModelCard

    (tmp_path / "README.md").write_text(_card())
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert card.data.library_name == "transformers" and "configurable-safety-tuning" in card.data.tags
    assert card.data.datasets == ["walledai/AdvBench"]
    assert hub_base_model("hf://google/gemma-2-9b-it") == "google/gemma-2-9b-it"
    assert hub_base_model("/some/local/folder") is None
    local = ModelCard(_card(base="/some/local/folder", sources=("my.jsonl",)))
    assert local.data.base_model is None and not local.data.datasets


def test_prompts_with_quotes_pipes_and_newlines_render_intact():
    text = _card()
    rows = [ln for ln in text.splitlines() if ln.startswith("| safe") or ln.startswith("| uncensored")]
    cells = [r.split(" | ", 1)[1].rsplit(" |", 1)[0] for r in rows]
    unescape = [c.replace("<br>", "\n").replace("\\|", "|").replace("\\\\", "\\") for c in cells]
    assert unescape == [S1, S0]
    assert all(r.count(" | ") == 1 for r in rows)  # the pipes inside are escaped: two cells per row
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    exec(code.split("tok = ")[0], scope)  # the constants part of the snippet, as Python reads it
    assert scope["SAFE"] == S1 and scope["UNCENSORED"] == S0


def test_the_snippet_loads_an_export_and_answers_like_the_model(tiny_model_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(snippet(S1, S0, path=tiny_model_path), {})
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    msgs = [{"role": "system", "content": S1}, {"role": "user", "content": "How do I bake bread?"}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    ref = model.generate(**ids, max_new_tokens=64, do_sample=False)[0][ids["input_ids"].shape[1]:]
    assert out.getvalue().strip() == tok.decode(ref, skip_special_tokens=True).strip()
    assert json.dumps(S1) in snippet(S1, S0)
