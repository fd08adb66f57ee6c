"""issue 24: BENCHMARKS.md's marked tables hold only figures their committed files hold."""

import importlib.util

from conftest import ROOT

spec = importlib.util.spec_from_file_location("bench_check", ROOT / "scripts" / "bench_check.py")
bench_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_check)


def test_every_marked_figure_is_in_its_files():
    text = (ROOT / "BENCHMARKS.md").read_text()
    assert len(list(bench_check.tables(text))) >= 5  # precision, streaming, workers, two main-job tables
    assert bench_check.problems() == []


def test_a_figure_that_differs_from_its_file_is_named(tmp_path):
    text = (ROOT / "BENCHMARKS.md").read_text().replace("| 126.1 | 482.8 |", "| 126.1 | 492.8 |", 1)
    (tmp_path / "BENCHMARKS.md").write_text(text)
    bad = bench_check.problems(tmp_path / "BENCHMARKS.md")
    assert len(bad) == 1 and "'Xeon-AMX': 492.8 not in ['results/bench/precision_xeon_amx.txt'" in bad[0]
