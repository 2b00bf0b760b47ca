"""Set-up shared by the FL server and client processes."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import NoReturn

# Flower's banners for the deprecated-but-supported API that flower_api.py uses on purpose.
FLOWER_BANNERS = ("DEPRECATED FEATURE", "FEATURE UPDATE")


class _NoBanners(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).lstrip().startswith(FLOWER_BANNERS)


def log_flower_once() -> None:
    """Flower logs to its `flwr` logger, which has its own colour console handler and also propagates to the root
    logger: every line appeared twice, once with colour codes. Keep the root's plain handler only, and drop the
    deprecation banners repeated on every start."""
    from flwr.common import logger as flower_logger  # importing it installs Flower's handler; remove it after

    flwr = logging.getLogger(flower_logger.LOGGER_NAME)
    for handler in list(flwr.handlers):
        flwr.removeHandler(handler)
    flwr.propagate = True
    flwr.addFilter(_NoBanners())


def prepare_process() -> None:
    """One torch thread (many FL processes share a machine), no telemetry, logs to stderr, clean SIGTERM."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log_flower_once()

    def on_term(signum: int, frame: FrameType | None) -> None:
        # Exit through SystemExit so that finally-blocks run; the exit code tells the supervisor it was asked to.
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)


def use_cpus(cpus: int) -> None:
    """Job.resources.cpus as torch threads (0 keeps the one thread prepare_process set)."""
    if cpus > 0:
        import torch

        torch.set_num_threads(cpus)
        logging.getLogger("florist.fl").info("using %d torch threads (Job.resources.cpus)", torch.get_num_threads())


def exit_code(exc: SystemExit) -> int:
    """The exit code the interpreter would give for `exc` (a message instead of a code is printed, and means 1)."""
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    print(exc.code, file=sys.stderr)
    return 1


def run_then_exit(body: Callable[[], None], role: str) -> NoReturn:
    """Run an FL process's `body`, then end the process with its exit code whatever threads are still running.

    Flower's gRPC threads are not daemons: a connected client's stream handler waits for its next message
    forever, and the interpreter's normal shutdown joins them. An FL server that failed (or got SIGTERM) with a
    client still connected would never end, and the job would never learn it failed: exit without joining them,
    once the logs are flushed.
    """
    code = 0
    try:
        body()
    except SystemExit as exc:  # sys.exit(...) or SIGTERM (prepare_process)
        code = exit_code(exc)
    except Exception as exc:
        logging.getLogger(f"florist.fl.{role}").error("FL %s failed: %s", role, exc, exc_info=True)
        code = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
