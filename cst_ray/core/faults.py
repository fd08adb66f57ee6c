"""Fault injection for the crash and resume tests, off unless the environment asks for it.

Tests set `CST_RAY_FAULTS` to a JSON object {point: {"at": n, "marker": path}}; product config
has no such keys. A process that reaches `point` for the n-th time exits hard (`os._exit(1)`,
as a killed worker would), once per marker file, so the retried task or restarted worker runs on;
with "always": true, every time (a batch that always kills its process: the bounded-retry tests).
Points: `engine_batch` (a Ray Data engine actor's n-th batch), `train_step` (rank 0 after the
checkpoint of step n).
"""

from __future__ import annotations

import json
import os

FAULTS_ENV = "CST_RAY_FAULTS"


def crash_once(point: str, count: int) -> None:
    spec = json.loads(os.environ.get(FAULTS_ENV) or "{}").get(point)
    if not spec or int(spec["at"]) != count:
        return
    if spec.get("always"):
        os._exit(1)
    try:
        fd = os.open(spec["marker"], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os._exit(1)
