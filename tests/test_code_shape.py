"""Stages only orchestrate (issue 26): a stage module stays short, its work lives in the layers
below, and no function anywhere in cst_ray grows past what one reading takes in."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_STAGE_MODULE_LINES = 100
MAX_FUNCTION_LINES = 60


def _long_stage_modules(folder: Path = ROOT / "cst_ray" / "stages") -> list[str]:
    return [f"{p.relative_to(ROOT)}: {n} lines" for p in sorted(folder.glob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_STAGE_MODULE_LINES]


def _long_functions(package: Path = ROOT / "cst_ray") -> list[str]:
    out = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines")
    return out


def test_no_stage_module_over_100_lines():
    long = _long_stage_modules()
    assert long == [], f"stage modules over {MAX_STAGE_MODULE_LINES} lines: {long}"


def test_no_function_over_60_lines():
    long = _long_functions()
    assert long == [], f"functions over {MAX_FUNCTION_LINES} lines: {long}"
