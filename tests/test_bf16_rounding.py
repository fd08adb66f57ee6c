"""scripts/bf16_master_vs_export.py's delta figures (issue 33): how much of a fine-tuning delta
survives bf16 rounding, on tensors whose answer is known."""

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bf16_master_vs_export.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("bf16_master_vs_export", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_delta_below_half_a_bf16_step_is_lost_and_a_large_one_survives(script):
    base = {"w": torch.ones(4, 4), "v": torch.ones(8)}
    tiny = torch.full((4, 4), 2.0 ** -10)  # bf16 keeps 8 bits: its step at 1.0 is 2^-7
    big = torch.full((8,), 0.5)
    master = {"w": base["w"] + tiny, "v": base["v"] + big, "lm_head.weight": torch.zeros(2)}  # tied: skipped
    export = {k: v.bfloat16() for k, v in master.items() if k != "lm_head.weight"}
    d = script.delta_figures(base, master, export)
    assert d["weights"] == 24 and d["changed_by_training"] == 24
    assert d["share_of_changed_that_round_to_the_base"] == pytest.approx(16 / 24, abs=1e-4)
    true2 = 16 * (2.0 ** -10) ** 2 + 8 * 0.25
    assert d["rounding_error_over_delta_norm"] == pytest.approx((16 * (2.0 ** -10) ** 2 / true2) ** 0.5, abs=1e-4)
    assert d["export_equals_bf16_of_master"] is True
    export["v"] = export["v"] + 1
    assert script.delta_figures(base, master, export)["export_equals_bf16_of_master"] is False
