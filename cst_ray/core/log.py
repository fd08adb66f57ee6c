"""Logging set-up: one `cst_ray` logger tree, configured once by the CLI (and once per Ray
worker process that logs), writing `[cst-ray] message` lines to stderr."""

from __future__ import annotations

import logging
import sys

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
