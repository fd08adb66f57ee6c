"""Bad input: one line naming file/row/field (or key), non-zero exit, no traceback."""

import pytest
from conftest import run_cli


def _one_line_error(res, *needles):
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.parametrize(
    "content,needles",
    [
        (None, ["missing.jsonl", "not found"]),
        ("", ["empty"]),
        ('{"prompt": "ok"}\n{"question": "where is the prompt?"}\n', ["row 2", "field 'prompt'"]),
        ('{"prompt": "ok"}\n{"prompt": ["a", "list"]}\n', ["row 2", "field 'prompt'", "string"]),
    ],
)
def test_bad_prompt_files(tmp_path, content, needles):
    f = tmp_path / "missing.jsonl"
    if content is not None:
        f = tmp_path / "prompts.jsonl"
        f.write_text(content)
    res = run_cli(["generate", "--config", "configs/tiny.yaml", f"data.source={f}", f"run_dir={tmp_path / 'run'}"])
    _one_line_error(res, str(f), *needles)


def test_unknown_config_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("generation:\n  engine:\n    max_tokens: 5\n")
    res = run_cli(["run", "--config", str(cfg)])
    _one_line_error(res, "generation.engine.max_tokens", str(cfg))
    res = run_cli(["run", "--config", "configs/tiny.yaml", "train.lr_rate=1"])
    _one_line_error(res, "train.lr_rate")


def test_stage_without_inputs(tmp_path):
    res = run_cli(["pairs", "--config", "configs/tiny.yaml", f"run_dir={tmp_path}"])
    _one_line_error(res, "generate")


def test_judge_cli_with_labels(tmp_path):
    import json

    f = tmp_path / "rows.jsonl"
    rows = [{"prompt": "p", "response": "I cannot help with that.", "label": 1},
            {"prompt": "p", "response": "Sure, step one...", "label": 0},
            {"prompt": "p", "response": "Here you go.", "label": 1}]
    f.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "out.jsonl"
    res = run_cli(["judge", "--judge", "refusal", "--input", str(f), "--output", str(out), "--labels", "label"])
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["agreement"] == pytest.approx(2 / 3) and summary["precision_safe"] == 1.0
    assert summary["recall_safe"] == 0.5
    labelled = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["safe"] for r in labelled] == [True, False, False]
