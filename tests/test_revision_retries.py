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
    assert "up to 4 answers sampled under s0, the first that is not a refusal kept" in _data_note(cfg)
    assert "`generation.critique.y0_samples: 4`" in _data_note(cfg)
    assert "sampled" not in _data_note(load_config("configs/tiny.yaml", []))


class EchoEngine:
    """Answers every conversation at once; the revision's token count is set per call."""

    def __init__(self, revision_tokens: int):
        from cst_ray.config.schema import EngineConfig

        self.cfg = EngineConfig(seed=0)
        self.revision_tokens = revision_tokens

    def chat(self, conversations, **_):
        last = [c[-1]["content"] for c in conversations]
        return [Completion(text="I cannot help with that." if "rewrite" in t.lower() or "revis" in t.lower()
                           else "Sure, here it is.", prompt_tokens=3,
                           completion_tokens=self.revision_tokens, finish_reason="stop") for t in last]


def _chain(revision_tokens: int, stream_rows: int = 0):
    """A CritiqueChain over an in-process engine (no Ray, no model)."""
    from cst_ray.config.schema import CriticConfig, CritiqueConfig, FilterConfig
    from cst_ray.data.constitution import load_constitution
    from cst_ray.generation.critique import CritiqueChain

    chain = CritiqueChain.__new__(CritiqueChain)
    chain.engine = chain.critic = EchoEngine(revision_tokens)
    chain.critique_cfg, chain.filters, chain.critic_cfg = CritiqueConfig(), FilterConfig(), CriticConfig()
    chain.s0, chain.principles, chain.critic_name = "s0", load_constitution(""), ""
    chain.model_name, chain.node_id, chain._batches = "m", "", 0
    chain.stream_rows, chain.rows_at_once = stream_rows, 0
    return chain


def test_row_ids_do_not_depend_on_token_counts():
    """Issue 25: with one principle per prompt a row's id is its prompt's id, whatever the length
    of the last revision (the loop variable once shadowed the principle count)."""
    import pyarrow as pa

    batch = pa.table({"id": ["p1", "p2"], "prompt": ["x", "y"], "source": ["s", "s"]})
    for tokens in (1, 7):
        out = pa.concat_tables(list(_chain(tokens)(batch)))
        assert out.column("id").to_pylist() == ["p1", "p2"], tokens


def test_a_batch_streams_out_in_groups_that_cover_every_row_once():
    import pyarrow as pa

    batch = pa.table({"id": [f"p{i}" for i in range(5)], "prompt": list("abcde"), "source": ["s"] * 5})
    chain = _chain(4, stream_rows=2)
    parts = list(chain(batch))
    assert sorted(p.num_rows for p in parts) == [1, 2, 2]
    assert sorted(i for p in parts for i in p.column("id").to_pylist()) == [f"p{i}" for i in range(5)]
    assert chain._batches == 1  # one Ray Data batch, counted once (the fault hook's count)
    assert all(p.column("y0_s").to_pylist()[0] >= 0 for p in parts)


def test_groups_run_a_window_at_a_time_and_the_next_starts_when_one_ends():
    import threading
    import time

    import pyarrow as pa

    from cst_ray.generation.engine_actor import EngineActor

    actor = EngineActor.__new__(EngineActor)
    actor._batches = 0
    lock, live, most = threading.Lock(), [0], [0]

    def work(group):
        with lock:
            live[0] += 1
            most[0] = max(most[0], live[0])
        time.sleep(0.05 * (1 + int(group.column("id")[0].as_py()[1:]) % 3))
        with lock:
            live[0] -= 1
        return group

    batch = pa.table({"id": [f"p{i}" for i in range(16)]})
    parts = list(actor.stream_groups(batch, work, rows_per_group=2, rows_at_once=6))
    assert most[0] == 3  # 6 rows at once = 3 groups of 2
    assert sorted(i for p in parts for i in p.column("id").to_pylist()) == sorted(batch.column("id").to_pylist())


ETHICS_REQUEST = ('Revise the answer so that a careful, ethical expert would approve of it: politely decline the '
                  'unethical or harmful request ("I\'m sorry, but I cannot help with that"), say why in one sentence, '
                  'and offer something safe and helpful instead. Give only the revised answer.')


def test_a_revision_that_restates_its_request_is_no_revision():
    """Seen in a run (Qwen2.5-Coder-0.5B as critic, ~17% of revisions): the critic echoes the
    revision request. Such a y1 contains a refusal phrase (the quoted one), so a refusal check
    alone kept it, and the model learnt to answer s1 with instructions."""
    from cst_ray.data.refusals import harmless_revision, repeats_request

    echoes = ['Politely decline the unethical or harmful request ("I\'m sorry, but I cannot help with that"), say '
              'why in one sentence, and offer something safe and he',
              '"Calmly decline the unethical or harmful request. I\'m sorry, but I cannot help with that. Instead, '
              'I\'ll offer something safe and helpful."']
    own = ["I'm sorry, but I cannot help with that. Forging a signature is fraud; a notary can help you with "
           "legitimate documents instead.", "I'm sorry, but I cannot help with that."]
    assert [repeats_request(t, ETHICS_REQUEST) for t in echoes + own] == [True, True, False, False]
    assert [harmless_revision(t, ETHICS_REQUEST) for t in echoes + own] == [False, False, True, True]
    # a refusal that goes on to comply is no harmless revision either
    assert not harmless_revision("I'm sorry, but here's how: step 1, buy a pipe.", ETHICS_REQUEST)


def test_restated_requests_are_resampled_and_rejected_when_they_persist():
    from cst_ray.config.schema import FilterConfig
    from cst_ray.generation.critique import reject_reason

    echo = 'Politely decline the unethical or harmful request ("I\'m sorry, but I cannot help with that").'
    engine = ScriptedEngine({"a": [echo, "I'm sorry, but I cannot help with that."], "b": [echo, echo]})
    convs = [[{"role": "user", "content": k}] for k in "ab"]
    revs, attempts, _ = revise_until_harmless(engine, convs, samples=2, trim=False,
                                              requests=[ETHICS_REQUEST, ETHICS_REQUEST])
    assert [r.text for r in revs] == ["I'm sorry, but I cannot help with that.", echo] and attempts == [2, 2]
    y0 = Completion(text="Sure, here is the plan.", prompt_tokens=1, completion_tokens=5, finish_reason="stop")
    assert reject_reason(y0, revs[0], FilterConfig(), ETHICS_REQUEST) == ""
    assert reject_reason(y0, revs[1], FilterConfig(), ETHICS_REQUEST) == "y1_repeats_request"
    assert reject_reason(y0, revs[1], FilterConfig()) == ""  # no request known: only the refusal counts
