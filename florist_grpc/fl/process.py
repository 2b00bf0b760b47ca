"""Set-up shared by the FL server and client processes."""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType


def prepare_process() -> None:
    """One torch thread (many FL processes share a machine), no telemetry, logs to stderr, clean SIGTERM."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def on_term(signum: int, frame: FrameType | None) -> None:
        # Exit through SystemExit so that finally-blocks run; the exit code tells the supervisor it was asked to.
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
