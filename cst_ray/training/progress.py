"""The driver's live view of training: a thread that reads rank 0's metrics.jsonl while
`trainer.fit()` runs and logs one progress line at most every `interval_s` seconds."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)


def progress_line(m: dict, total_steps: int, step_s: float, label: str = "train") -> str:
    """[train] step 12/107  loss 0.6012  margin 0.210  acc 0.75  140 tok/s  ETA 812s

    `step_s` is the mean wall time of the training steps seen so far (`time/step_s`), so the ETA
    leaves out what came before step 1: workers' start, model load, the reference pass."""
    step = int(m.get("step", 0))
    eta = (total_steps - step) * step_s if 0 < step < total_steps else 0.0
    return (f"[{label}] step {step}/{total_steps}  loss {m.get('loss', float('nan')):.4f}  "
            f"margin {m.get('rewards/margins', float('nan')):.3f}  acc {m.get('rewards/accuracies', float('nan')):.2f}  "
            f"{m.get('tokens_per_s', 0.0):.0f} tok/s" + (f"  ETA {eta:.0f}s" if eta else ""))


class TrainingProgress:
    """with TrainingProgress(path, total_steps): trainer.fit()"""

    def __init__(self, metrics_path: Path, total_steps: int, interval_s: float = 10.0, label: str = "train"):
        self.path, self.total, self.interval, self.label = Path(metrics_path), total_steps, interval_s, label
        self._stop = threading.Event()
        self._offset = 0
        self._last_step = 0
        self._step_s: list[float] = []  # each step's time/step_s, as read

    def __enter__(self):
        self.t0 = time.time()
        self._thread = threading.Thread(target=self._run, name="train-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._report()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._report()

    def _report(self) -> None:
        last = None
        if self.path.is_file():
            with open(self.path) as f:
                f.seek(self._offset)
                for line in f:
                    if not line.endswith("\n"):
                        break  # a line still being written: read it whole next time
                    self._offset += len(line.encode())
                    try:
                        row = json.loads(line)
                    except ValueError:  # blank, or a torn line from a crash before a resume
                        continue
                    last = row
                    if "time/step_s" in last:
                        self._step_s.append(float(last["time/step_s"]))
        if last and int(last.get("step", 0)) != self._last_step:
            self._last_step = int(last["step"])
            mean = sum(self._step_s) / len(self._step_s) if self._step_s else 0.0
            log.info(progress_line(last, self.total, mean, self.label))
