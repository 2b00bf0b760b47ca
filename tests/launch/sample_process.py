"""A stand-in FL process for launcher-pool tests: `main()` does what its run (JSON in FLORIST_RUN) says.

{"print": TEXT, "ready": true, "exit": CODE, "wait": true} -- print TEXT, say ready, then wait for a signal (wait) or
exit with CODE.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from florist_grpc.fl.readiness import signal_ready
from florist_grpc.fl.run_config import take_run_json


def main() -> None:
    plan = json.loads(take_run_json())
    extra = os.environ.get("FLORIST_SAMPLE", "")
    print(plan.get("print", ""), f"session={os.getsid(0)} pid={os.getpid()} env={extra}", flush=True)
    if plan.get("ready"):
        signal_ready()
    if plan.get("wait"):
        signal.pause()  # until a signal ends it
    sys.exit(int(plan.get("exit", 0)))


if __name__ == "__main__":
    main()
