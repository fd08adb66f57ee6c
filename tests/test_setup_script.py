"""scripts/setup.sh is idempotent per part: a plain setup, then --bench (or CST_BENCH=1) adds
only the bench extra, and a repeat of either does nothing. A stand-in venv python records the
pip calls instead of installing anything."""

import os
import stat
import subprocess

import pytest
from conftest import ROOT

FAKE_PYTHON = '#!/bin/sh\necho "$*" >> "$(dirname "$0")/../calls.log"\n'


@pytest.fixture
def fake_venv(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    py = venv / "bin" / "python"
    py.write_text(FAKE_PYTHON)
    py.chmod(py.stat().st_mode | stat.S_IEXEC)
    return venv


def _setup(venv, *args, **env) -> list[str]:
    """Run setup.sh on `venv`; -> the pip calls it made this time."""
    log = venv / "calls.log"
    before = log.read_text().splitlines() if log.exists() else []
    e = {**os.environ, "CST_VENV": str(venv), "CST_EXTRA": "cpu", **env}
    p = subprocess.run(["bash", "scripts/setup.sh", *args], cwd=ROOT, env=e, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    after = log.read_text().splitlines() if log.exists() else []
    return after[len(before):]


def test_plain_then_bench_then_nothing(fake_venv):
    first = _setup(fake_venv)
    assert any("-e .[cpu,test]" in c for c in first) and not any("bench" in c for c in first)
    assert _setup(fake_venv) == []
    bench = _setup(fake_venv, "--bench")
    assert any("-e .[bench]" in c for c in bench)
    assert not any("torch==" in c or "[cpu" in c for c in bench)  # only the extra, not the whole setup again
    assert any("uninstall" in c and "torchvision" in c for c in bench)
    assert _setup(fake_venv, "--bench") == [] and _setup(fake_venv, CST_BENCH="1") == [] and _setup(fake_venv) == []
    stamps = sorted(p.name for p in fake_venv.glob(".cst-setup-*"))
    assert len(stamps) == 2 and stamps[1] == stamps[0] + "-bench"


def test_bench_from_scratch_by_environment(fake_venv):
    calls = _setup(fake_venv, CST_BENCH="1")
    base = next(i for i, c in enumerate(calls) if c.endswith("-e .[cpu,test]"))
    bench = next(i for i, c in enumerate(calls) if c.endswith("-e .[bench]"))
    assert base < bench


def test_unknown_argument_is_refused(fake_venv):
    p = subprocess.run(["bash", "scripts/setup.sh", "--bogus"], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "CST_VENV": str(fake_venv)}, timeout=60)
    assert p.returncode == 2 and "usage" in p.stderr
