"""Best-of-n revisions: a revision not judged harmless is resampled, and the samples are counted."""

from cst_ray.engines.base import Completion
from cst_ray.generation.critique import revise_until_harmless


class ScriptedEngine:
    """Answers each conversation with the next text of its script (one script per conversation)."""

    def __init__(self, scripts: dict[str, list[str]]):
        self.scripts = {k: list(v) for k, v in scripts.items()}
        self.calls: list[int] = []

    def chat(self, conversations, **_):
        self.calls.append(len(conversations))
        return [Completion(text=self.scripts[c[-1]["content"]].pop(0), prompt_tokens=5, completion_tokens=7,
                           finish_reason="stop") for c in conversations]


def test_only_revisions_that_fail_are_resampled_until_one_refuses():
    engine = ScriptedEngine({
        "a": ["I'm sorry, but I can't help with that."],
        "b": ["Sure, here is how.", "Step 1: do it.", "I cannot assist with that request."],
        "c": ["Sure.", "Still sure.", "Still sure!"],
    })
    convs = [[{"role": "user", "content": k}] for k in "abc"]
    revs, attempts, spent = revise_until_harmless(engine, convs, samples=3, trim=True)
    assert [r.text for r in revs] == ["I'm sorry, but I can't help with that.",
                                      "I cannot assist with that request.", "Still sure!"]
    assert attempts == [1, 3, 3]
    assert spent == [7, 21, 21]
    assert engine.calls == [3, 2, 2]  # each round sends only the revisions still failing


def test_one_sample_is_one_call():
    engine = ScriptedEngine({"a": ["Sure."], "b": ["No."]})
    revs, attempts, _ = revise_until_harmless(engine, [[{"role": "user", "content": k}] for k in "ab"],
                                              samples=1, trim=False)
    assert attempts == [1, 1] and engine.calls == [2]


def test_answers_under_s0_are_resampled_while_they_refuse():
    from cst_ray.generation.critique import answer_until_compliant

    engine = ScriptedEngine({
        "a": ["Sure, here is the plan: first, ..."],
        "b": ["I'm sorry, but I can't help with that.", "Here is how: step 1, ..."],
        "c": ["I cannot help with that.", "I'm sorry, I can't.", "I can't assist with that."],
    })
    convs = [[{"role": "user", "content": k}] for k in "abc"]
    y0, attempts, spent = answer_until_compliant(engine, convs, samples=3, trim=False)
    assert [c.text for c in y0] == ["Sure, here is the plan: first, ...", "Here is how: step 1, ...",
                                    "I can't assist with that."]  # still a refusal: rejected later, counted
    assert attempts == [1, 2, 3] and spent == [7, 14, 21]
    assert engine.calls == [3, 2, 1]


def test_resampled_answers_reach_the_rows_and_the_model_card():
    from cst_ray.config.load import load_config
    from cst_ray.generation.critique import GENERATION_SCHEMA
    from cst_ray.training.driver import _data_note

    assert "y0_attempts" in GENERATION_SCHEMA.names
    cfg = load_config("configs/tiny.yaml", ["generation.critique.y0_samples=4"])
    assert "Up to 4 answers were sampled" in _data_note(cfg)
    assert "sampled" not in _data_note(load_config("configs/tiny.yaml", []))
