"""The devices an agent's FL clients can use, as hello reports them: "cpu", then "cuda:0", "cuda:1", ..."""

from __future__ import annotations

import logging
import subprocess
import sys

log = logging.getLogger(__name__)

# torch is imported in a child, not in the agent: the agent stays small and never initialises CUDA itself.
_PROBE = "import torch; print(torch.cuda.device_count())"


def probe_devices(timeout: float = 120.0) -> list[str]:
    try:
        result = subprocess.run(
            [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=timeout, check=True
        )
        count = int(result.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        log.warning("could not count CUDA devices (%s); reporting the CPU only", exc)
        count = 0
    return ["cpu", *(f"cuda:{i}" for i in range(count))]
