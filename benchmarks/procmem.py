"""Peak memory of a process tree, sampled: summed PSS (shared pages split fairly between the
processes that map them) and summed RSS, with the largest processes at the peak."""

from __future__ import annotations

import threading

GiB = 1024**3


class TreeMemory:
    """Peak summed PSS and RSS of a process and all its descendants."""

    def __init__(self, pid: int, interval: float = 0.25):
        import psutil

        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_pss = self.peak_rss = 0
        self.peak_procs = 0
        self.top: list = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.root] + self.root.children(recursive=True)
            except psutil.Error:
                break
            pss = rss = 0
            each = []
            for p in procs:
                try:
                    m = p.memory_full_info()
                    pss += m.pss
                    rss += m.rss
                    each.append((m.pss, " ".join(p.cmdline()[:3])[-60:]))
                except psutil.Error:
                    pass
            if pss > self.peak_pss:
                self.top = sorted(each, reverse=True)[:12]
            self.peak_pss, self.peak_rss = max(self.peak_pss, pss), max(self.peak_rss, rss)
            self.peak_procs = max(self.peak_procs, len(procs))
            self._stop.wait(self.interval)

    def stop(self) -> dict:
        self._stop.set()
        self._t.join()
        return {"peak_pss_gib": round(self.peak_pss / GiB, 3), "peak_rss_gib": round(self.peak_rss / GiB, 3),
                "processes": self.peak_procs,
                "top_at_peak": [f"{n} {b / GiB:.2f} GiB" for b, n in self.top]}
