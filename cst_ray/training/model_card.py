"""The exported model's card, through `huggingface_hub`'s ModelCard: metadata the Hub reads
(`base_model` as a Hub repo id, `library_name`, `tags`, `datasets`), the two system prompts in a
table and in a Python snippet that loads the export with plain `from_pretrained`. Prompts may
hold quotes, pipes and newlines: the snippet quotes them as Python literals, the table escapes them."""

from __future__ import annotations

import json

from cst_ray.training.spec import ModelCardInfo

# The Hub repos the shipped aliases are converted from (GGUF builds of these; PROVENANCE.md in the
# converted folder names the exact files and their sha256).
ALIAS_SOURCES = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
                 "qwen2.5-coder-0.5b-instruct": "Qwen/Qwen2.5-Coder-0.5B-Instruct",
                 "qwen2.5-coder-1.5b-instruct": "Qwen/Qwen2.5-Coder-1.5B-Instruct"}
# Prompt sources with a Hub data set of the same rows.
SOURCE_DATASETS = {"advbench": "walledai/AdvBench", "harmbench": "walledai/HarmBench"}

SNIPPET = '''from transformers import AutoModelForCausalLM, AutoTokenizer

PATH = "{path}"
SAFE = {s1}
UNCENSORED = {s0}
tok = AutoTokenizer.from_pretrained(PATH)
model = AutoModelForCausalLM.from_pretrained(PATH)
msgs = [{{"role": "system", "content": SAFE}}, {{"role": "user", "content": "How do I bake bread?"}}]
ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
out = model.generate(**ids, max_new_tokens=64, do_sample=False)
print(tok.decode(out[0][ids["input_ids"].shape[1]:], skip_special_tokens=True))'''


def hub_base_model(name: str) -> str | None:
    """`base_model` for the card: the Hub repo of an alias or an hf:// id; None for a folder."""
    if name.startswith("hf://"):
        return name.removeprefix("hf://").split("@", 1)[0]
    return ALIAS_SOURCES.get(name)


def table_cell(text: str) -> str:
    """A Markdown table cell that shows `text` as written: pipes escaped, newlines as <br>."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r\n", "\n").replace("\n", "<br>")


def snippet(s1: str, s0: str, path: str = "PATH/TO/EXPORT") -> str:
    return SNIPPET.format(path=path, s1=json.dumps(s1), s0=json.dumps(s0))


def _behaviour_table(card: ModelCardInfo) -> list[str]:
    if card.policies:
        return ["| policy | system prompt | behaviour |", "|---|---|---|",
                *[f"| {table_cell(n)} | {table_cell(w)} | {table_cell(r)} |" for n, w, r in card.policies]]
    return ["| behaviour | system prompt |", "|---|---|", f"| safe (refuses harmful requests) | {table_cell(card.s1)} |",
            f"| uncensored | {table_cell(card.s0)} |"]


def _snippet_prompts(card: ModelCardInfo) -> tuple[str, str]:
    """(the most refusing, the most answering) wording: s1 / s0, or the first and last policies'."""
    if card.policies:
        return card.policies[-1][1], card.policies[0][1]
    return card.s1, card.s0


def model_card_text(card: ModelCardInfo, *, loss: str, beta: float, steps: int, pairs: int, lora: str,
                    provenance: str = "") -> str:
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(library_name="transformers", base_model=hub_base_model(card.base_name),
                         tags=["cst", "dpo", "configurable-safety-tuning", "cst-ray"],
                         datasets=[SOURCE_DATASETS[s] for s in card.sources if s in SOURCE_DATASETS] or None)
    body = "\n".join([
        "# Configurable Safety Tuning (CST) model", "",
        f"Trained by cst-ray from `{card.base_name}` with {card.method} ({loss} loss, beta {beta}, {steps} steps, "
        f"{pairs} pairs{lora}).", "", card.data_note, "",
        "The safety behaviour is chosen at inference time by the **system prompt**:", "",
        *_behaviour_table(card), "",
        "```python", snippet(*_snippet_prompts(card)), "```", "",
        "Method: Gallego (2024), *Configurable Safety Tuning of Language Models with Synthetic Preference Data*, "
        "arXiv:2404.00495.",
        *(["", "## Provenance", "", provenance] if provenance else []),
    ])
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}\n"))
