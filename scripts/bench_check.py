"""Check BENCHMARKS.md's tables against the committed files their figures come from.

    python scripts/bench_check.py

A table preceded by `<!-- figures from: PATH [PATH ...] -->` (paths from the repository root:
results/bench/*.txt, a run's results/runs/<run>/summary.md, ...) is checked cell by cell: every
number in its rows, after the first column, must appear in one of those files, as printed or
rounded to the table's decimals. Not checked, and marked so in the table: a cell that is a ratio
of two figures of its row (it ends in "x"), and a row whose first cell carries "†" (read off the
console or timed by the shell around a command, or quoted from elsewhere: no file here holds it). Exit status 1 names every figure that is not found.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = re.compile(r"<!-- figures from: (.+?) -->")
NUM = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")


def numbers(text: str) -> list[str]:
    return [n.replace(",", "") for n in NUM.findall(text)]


def found(value: str, pool: set[float]) -> bool:
    """`value` (as the table prints it) is a figure of the sources, or one rounded to its decimals
    (half a unit of its last place either way: 252.5 may be printed 252 or 253)."""
    places = len(value.split(".")[1]) if "." in value else 0
    x, half = float(value), 0.5 * 10 ** -places + 1e-9
    return any(abs(y - x) <= half for y in pool)


def tables(text: str):
    """(line number, source paths, table rows) for every marked table."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = MARK.search(line)
        if not m:
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith("|"):
            j += 1
        rows = []
        while j < len(lines) and lines[j].startswith("|"):
            rows.append(lines[j])
            j += 1
        yield i + 1, m.group(1).split(), rows[2:]  # header and separator are not figures


def problems(path: Path = ROOT / "BENCHMARKS.md") -> list[str]:
    out = []
    for line_no, sources, rows in tables(path.read_text()):
        missing_files = [s for s in sources if not (ROOT / s).is_file()]
        if missing_files:
            out.append(f"BENCHMARKS.md:{line_no}: no file {missing_files}")
            continue
        pool = {float(n) for s in sources for n in numbers((ROOT / s).read_text())}
        for row in rows:
            cells = [c.strip() for c in row.strip("|").split("|")]
            if "†" in cells[0]:
                continue
            for cell in cells[1:]:
                if cell.rstrip("*").endswith("x"):
                    continue
                out += [f"BENCHMARKS.md:{line_no}: {cells[0]!r}: {n} not in {sources}"
                        for n in numbers(cell) if not found(n, pool)]
    return out


def main() -> None:
    bad = problems()
    if bad:
        sys.exit("\n".join(bad))
    print("every figure of BENCHMARKS.md's marked tables is in its files")


if __name__ == "__main__":
    main()
