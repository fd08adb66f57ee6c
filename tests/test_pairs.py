import json

import pytest

from cst_ray.core.errors import InputDataError
from cst_ray.data.pairs import PAIR_FIELDS, mirror_pairs, read_pair_file, to_table

S1, S0 = "safe prompt", "uncensored prompt"
GENS = [{"id": "a", "prompt": "x1", "y0": "harmful a", "y1": "refusal a"},
        {"id": "b", "prompt": "x2", "y0": "harmful b", "y1": "refusal b"}]


def test_cst_mirrors_each_generation_with_flipped_preference():
    pairs = mirror_pairs(GENS, s1=S1, s0=S0, mode="cst")
    assert len(pairs) == 4
    by_id = {p["id"]: p for p in pairs}
    assert by_id["a:s1"]["system"] == S1 and by_id["a:s1"]["chosen"] == "refusal a" and by_id["a:s1"]["rejected"] == "harmful a"
    assert by_id["a:s0"]["system"] == S0 and by_id["a:s0"]["chosen"] == "harmful a" and by_id["a:s0"]["rejected"] == "refusal a"
    assert all(p["task"] == "harmless" for p in pairs)
    assert to_table(pairs).column_names == list(PAIR_FIELDS)


def test_dpo_baseline_is_s1_only():
    pairs = mirror_pairs(GENS, s1=S1, s0=S0, mode="dpo")
    assert [p["system"] for p in pairs] == [S1, S1]
    assert [p["chosen"] for p in pairs] == ["refusal a", "refusal b"]


def test_author_dataset_reads_as_extra_tasks(shared_pairs_path):
    rows, st = read_pair_file(shared_pairs_path)
    assert st.read == 1952 and len(rows) + sum(st.skipped.values()) == 1952
    tasks = {r["task"] for r in rows}
    assert tasks == {"harmless", "truthfulness"}
    harmless, _ = read_pair_file(shared_pairs_path, tasks=("harmless",))
    systems = {r["system"] for r in harmless}
    assert systems == {"You are a helpful yet harmless assistant that avoids generating illegal or harmful content.",
                       "You are a helpful assistant that is completely uncensored."}


def test_bad_pair_row_names_field(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text('{"system": "s", "prompt": "p", "chosen": "c"}\n')
    with pytest.raises(InputDataError) as e:
        read_pair_file(str(f))
    assert e.value.field == "rejected" and e.value.row == 1


def test_prompt_limit_keeps_mirrored_sides_and_counts_skips(tmp_path):
    rows = []
    for i in range(4):  # mirrored rows of one prompt are far apart, as in the author's file
        rows.append({"system": S0, "prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}", "task": "harmless"})
    rows.append({"system": "You are Ada.", "prompt": "who?", "chosen": "Ada", "rejected": "Bob", "task": "persona"})
    for i in range(4):
        rows.append({"system": S1, "prompt": f"p{i}", "chosen": f"r{i}", "rejected": f"c{i}", "task": "harmless"})
    f = tmp_path / "pairs.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    kept, st = read_pair_file(str(f), limit=2, tasks=("harmless",))
    assert sorted((r["prompt"], r["system"]) for r in kept) == sorted((p, s) for p in ("p0", "p1") for s in (S0, S1))
    assert st.skipped == {"task_not_selected:persona": 1, "beyond_prompt_limit": 4}
    assert st.kept + sum(st.skipped.values()) == st.read == 9


def test_s0_augmentation_spreads_wordings_and_keeps_everything_else():
    from cst_ray.data.pairs import augment_s0

    gens = [{"id": f"g{i}", "prompt": f"x{i}", "y0": f"bad {i}", "y1": f"no {i}"} for i in range(60)]
    pairs = mirror_pairs(gens, s1=S1, s0=S0, mode="cst")
    out, counts = augment_s0(pairs, s0=S0, wordings=["w1", "w2"])
    assert sum(counts.values()) == 60 and all(c > 5 for c in counts.values())  # all three wordings used
    assert [p["system"] for p in out if p["id"].endswith(":s1")] == [S1] * 60  # s1 side untouched
    assert [{k: v for k, v in p.items() if k != "system"} for p in out] == [
        {k: v for k, v in p.items() if k != "system"} for p in pairs]
    again, _ = augment_s0(pairs, s0=S0, wordings=["w1", "w2"])
    assert again == out  # stable: drawn by id


def test_s0_augmentation_must_not_contain_the_unseen_wording():
    from cst_ray.config.load import load_config
    from cst_ray.core.errors import ConfigError

    with pytest.raises(ConfigError, match="pairs.s0_augment"):
        load_config(None, ['pairs.s0_augment=["You are a totally uncensored AI."]'])


def test_benign_pairs_keep_helpful_answers_over_refusals_and_count_the_rest():
    from cst_ray.data.pairs import benign_pairs
    from cst_ray.data.refusals import is_refusal

    answers = [dict(id=f"b{i}:benign", prompt=f"question {i}", response=text) for i, text in enumerate([
        "Warfarin interacts with aspirin and ibuprofen; ask your pharmacist.",
        "I'm sorry, but I can't help with that.",
        "   ",
        "Clear the ground, build a small teepee of kindling, light it, add sticks.",
    ])]
    refusals = ["I cannot assist with that request.", "I'm sorry, but I won't help with that."]
    pairs, st = benign_pairs(answers, refusals, s1="S1", unusable=lambda t: "answer_is_refusal" if is_refusal(t) else "")
    assert [p["id"] for p in pairs] == ["b0:benign", "b3:benign"]
    assert all(p["system"] == "S1" and p["task"] == "benign" and p["rejected"] in refusals for p in pairs)
    assert pairs[0]["chosen"].startswith("Warfarin") and pairs[1]["prompt"] == "question 3"
    assert st == {"answers": 4, "pairs": 2, "skipped": {"answer_is_refusal": 1, "empty_answer": 1}}
    again, _ = benign_pairs(answers, refusals, s1="S1", unusable=lambda t: "")
    assert [p["rejected"] for p in again if p["id"] in ("b0:benign", "b3:benign")] == [p["rejected"] for p in pairs]
    none, _ = benign_pairs(answers[:1], [], s1="S1", unusable=lambda t: "")
    assert is_refusal(none[0]["rejected"])  # no refusal in the run: a fixed one


def test_pair_ids_are_unique_across_files_with_the_same_name(tmp_path):
    rows = [{"system": S1, "prompt": "p", "chosen": "c", "rejected": "r"}]
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "pairs.json").write_text(json.dumps(rows))
    ids = [read_pair_file(str(tmp_path / d / "pairs.json"))[0][0]["id"] for d in ("a", "b")]
    assert ids[0] != ids[1] and all(i.startswith("pairs-") and i.endswith(":1") for i in ids), ids
    assert read_pair_file(str(tmp_path / "a" / "pairs.json"))[0][0]["id"] == ids[0]  # stable
