"""FL processes log each Flower line once, without colour codes or deprecation banners (real Flower logger)."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
from florist_grpc.fl.process import log_flower_once
log_flower_once()
from flwr.common.logger import log, warn_deprecated_feature
warn_deprecated_feature("start_server")
log(logging.INFO, "round %s done", 1)
"""


def test_flower_lines_appear_once_plain_and_without_banners() -> None:
    result = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120, check=True)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["INFO flwr: round 1 done"], result.stderr
