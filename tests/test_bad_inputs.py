"""The bad-input corpus (tests/bad_inputs/cases.py) through the CLI: each case is one error
line with exit status 2 (naming file, row and field, or the config key), or a counted skip.
The stage commands stop in their checks before Ray starts: no case starts Ray or an engine.

Every case runs through `cst_ray.cli.main` in this process (stderr captured at the file
descriptor; an exception other than the CLI's own one-line error fails the case), and the
user-reported ones plus one of each kind also through `python -m cst_ray.cli` in a subprocess.
"""

import json
import logging
import os
import sys

import pytest
from bad_inputs.cases import CASES, Case, jsonl, model_folder, parquet
from conftest import ROOT, run_cli

# The failures a user reported (tracebacks, silent keeps, "0 CST pairs" with exit 0), and one
# case of every other kind: these also run as a real `python -m cst_ray.cli` process.
THROUGH_SUBPROCESS = (
    "jsonl invalid utf-8", "pairs invalid utf-8", "config invalid utf-8", "jsonl random binary", "parquet truncated",
    "jsonl same id, different prompts", "pairs object at top level", "pairs empty list", "config lr 0",
    "constitution entry without revision", "tokenizer without chat template", "bare hub id",
    "classifier judge without judge.json", "judge input invalid utf-8", "run_dir under a file",
    "prompt too long for max_model_len", "pair chosen == rejected",
)


def _build(case: Case, tmp_path) -> tuple[list[str], str]:
    if not case.as_root and os.geteuid() == 0:
        pytest.skip("root may write to a read-only folder")
    target = tmp_path / case.target
    case.make(target)
    return [a.replace("{f}", str(target)).replace("{tmp}", str(tmp_path)) for a in case.args], str(target)


def _skipped_counts(tree) -> dict:
    """Every `skipped` table in `cst-ray check`'s JSON, merged."""
    out: dict = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(v if k == "skipped" and isinstance(v, dict) else _skipped_counts(v))
    return out


def _check_outcome(case: Case, rc: int, stdout: str, stderr: str, f: str, tmp: str) -> None:
    if case.skip:
        assert rc == 0, stderr
        reason, count = case.skip
        assert _skipped_counts(json.loads(stdout)).get(reason) == count, stdout
        return
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert rc == 2, stderr
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    for needle in case.expect:
        assert needle.replace("{f}", f).replace("{tmp}", tmp) in lines[0], lines[0]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, tmp_path, capfd, monkeypatch):
    from cst_ray.cli import main

    args, f = _build(case, tmp_path)
    monkeypatch.chdir(ROOT)
    logging.getLogger("cst_ray").handlers.clear()  # the CLI's log handler then writes to this test's stderr
    capfd.readouterr()
    rc = main(args)
    out, err = capfd.readouterr()
    _check_outcome(case, rc, out, err, f, str(tmp_path))
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized(), "the checks must stop bad input before Ray starts"


@pytest.mark.parametrize("case", [c for c in CASES if c.name in THROUGH_SUBPROCESS],
                         ids=[c.name for c in CASES if c.name in THROUGH_SUBPROCESS])
def test_bad_input_through_the_cli_process(case: Case, tmp_path):
    args, f = _build(case, tmp_path)
    res = run_cli(args, timeout=120)
    _check_outcome(case, res.returncode, res.stdout, res.stderr, f, str(tmp_path))


def test_corpus_size():
    assert len(CASES) >= 45
    assert len({c.name for c in CASES}) == len(CASES)
    assert {c.name for c in CASES} >= set(THROUGH_SUBPROCESS)


@pytest.mark.parametrize("make,target,args", [
    (jsonl({"prompt": "a"}, {"prompt": "b"}), "p.jsonl", ["data.source={f}"]),
    (parquet([{"system": "s", "prompt": "x", "chosen": "no", "rejected": "yes"}]), "pairs.parquet",
     ["pairs.extra_tasks=[{f}]"]),
    (model_folder(), "m", ["model.name_or_path={f}", "generation.critic.name_or_path={f}"]),
], ids=["prompts", "pairs", "model folder"])
def test_good_twins_pass_the_checks(make, target, args, tmp_path):
    """The corpus' writers make good files too: what fails above fails for the planted fault."""
    case = Case("good", target, make, ("check", "--config", "configs/tiny.yaml", "run_dir={tmp}/run", *args))
    res = run_cli(_build(case, tmp_path)[0], timeout=120)
    assert res.returncode == 0, res.stderr


def test_debug_shows_the_traceback(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_bytes(b"\xff\n")
    res = run_cli(["generate", "--debug", "--config", "configs/tiny.yaml", f"data.source={bad}",
                   f"run_dir={tmp_path}/run"])
    assert res.returncode == 2 and "Traceback" in res.stderr and "InputDataError" in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("cst-ray: error:")
    res = run_cli(["--debug", "generate", "--config", "configs/tiny.yaml", f"data.source={bad}"])
    assert res.returncode == 2 and "Traceback" in res.stderr


def test_over_long_prompts_are_counted_in_prompts_stats(tmp_path):
    """The prompts stage skips rows that cannot fit generation.engine.max_model_len (a bound of
    4 characters per token) and records the count in prompts/stats.json."""
    from cst_ray.config.load import load_config
    from cst_ray.stages.prompts import prepare_prompts

    src = tmp_path / "p.jsonl"
    jsonl(*[{"prompt": f"question {i}"} for i in range(6)], {"prompt": "x" * 2049}, {"prompt": "y" * 2048})(src)
    cfg = load_config("configs/tiny.yaml", [f"run_dir={tmp_path / 'run'}", f"data.source={src}"])
    assert cfg.generation.engine.max_model_len == 512
    prepare_prompts(cfg)
    stats = json.loads((tmp_path / "run" / "prompts" / "stats.json").read_text())
    assert stats["skipped"] == {"prompt_too_long": 1} and stats["kept"] == 7 and stats["max_prompt_chars"] == 2048
