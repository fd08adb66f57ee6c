"""Logging set-up: one `cst_ray` logger tree, configured once by the CLI (and once per Ray
worker process that logs), writing `[cst-ray] message` lines to stderr."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

_HANDLER_NAME = "cst-ray-stderr"


def setup_logging(verbose: bool = False) -> None:
    """Attach the stderr handler to the `cst_ray` logger; idempotent."""
    logger = logging.getLogger("cst_ray")
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    if any(h.get_name() == _HANDLER_NAME for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("[cst-ray] %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False


def attach_run_log(run_dir: str | Path, verbose: bool = False) -> Path:
    """Everything the driver logs (cst-ray, Ray, Python warnings) also goes to
    <run_dir>/logs/driver.log; on the console only cst-ray's lines and errors, unless `verbose`.
    Ray's worker logs are linked as <run_dir>/logs/ray-session once Ray has started
    (`link_ray_session_logs`). -> the log folder."""
    logs = Path(run_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = str((logs / "driver.log").resolve())
    root = logging.getLogger()
    fh = next((h for h in root.handlers if getattr(h, "baseFilename", None) == path), None)
    if fh is None:
        fh = logging.FileHandler(path)
        fh.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        for name in ("", "cst_ray", "ray", "py.warnings"):  # cst_ray and ray do not propagate to the root
            logging.getLogger(name).addHandler(fh)
        root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.captureWarnings(True)  # warnings.warn -> the "py.warnings" logger
    logging.getLogger("py.warnings").propagate = verbose
    # Ray is not imported here: the embedded cluster's loopback setting must be in place before
    # its first import (core/ray_env.py); `init_ray` quiets Ray's console handlers once started.
    return logs


def link_ray_session_logs(run_dir: str | Path) -> None:
    """<run_dir>/logs/ray-session -> this Ray session's folder (worker stdout/stderr files)."""
    # Ray's own rule for its temp root (ray._common.utils.get_default_system_temp_dir)
    root = os.environ.get("RAY_TMPDIR") or (os.environ.get("TMPDIR") if sys.platform.startswith("linux") else "")
    session = Path(root or "/tmp") / "ray" / "session_latest"
    link = Path(run_dir) / "logs" / "ray-session"
    if session.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        if not link.exists():
            link.symlink_to(session.resolve())


def quiet_ray_console() -> None:
    """Ray's loggers (ray, ray.data, ray.train, ...) keep their files but print only errors on
    the console; run once Ray and Ray Data have set up their loggers (`init_ray`)."""
    names = [n for n in list(logging.root.manager.loggerDict) if n == "ray" or n.startswith("ray.")]
    for name in names:
        for h in getattr(logging.getLogger(name), "handlers", []):
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                h.setLevel(logging.ERROR)
