"""Every departure from the paper's recipe is named with the key that sets it."""

from cst_ray.config.departures import departures_markdown, paper_departures
from cst_ray.config.load import load_config


def test_the_default_lists_each_of_its_departures_with_its_setting():
    items = "\n".join(paper_departures(load_config("configs/default.yaml", [])))
    for key in ("generation.critic.name_or_path: qwen2.5-coder-0.5b-instruct", "train.nll_weight: 1",
                "data.benign_sources", "pairs.s0_augment", "generation.filters.y1_not_harmless",
                "train.max_completion_length: 64"):
        assert key in items, key
    assert "a refusal written for another, harmful prompt" in items
    assert "6 s0 wordings" in items


def test_the_paper_recipe_has_none():
    cfg = load_config("configs/tiny.yaml", ["generation.critic.name_or_path=", "data.benign_sources=[]",
                                            "train.nll_weight=0", "pairs.s0_augment=[]"])
    assert paper_departures(cfg) == []
    assert departures_markdown(cfg)[0].startswith("Recipe: the paper's")
    lora = load_config("configs/tiny.yaml", ["train.lora.enabled=true"])
    assert any("LoRA" in d for d in paper_departures(lora))
