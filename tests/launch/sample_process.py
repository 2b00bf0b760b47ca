"""A stand-in FL process for launcher-pool tests: `main()` does what its run (JSON in FLORIST_RUN) says.

{"print": TEXT, "ready": true, "exit": CODE, "wait": true} -- print TEXT, say ready, then wait for a signal (wait:
SIGUSR1 goes on to exit) and exit with CODE. {"train": true} first does what an FL client's first round does
(data, model, optimizer, one step, a checkpoint) and prints the modules that imported, as `imported=a,b,...`.
{"warm": true} prints whether a client round's code was already specialised when it started, as `warm=True`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from florist_grpc.domain.training import training_config
from florist_grpc.fl.readiness import signal_ready
from florist_grpc.fl.run_config import take_run_json


def first_round_imports() -> set[str]:
    before = set(sys.modules)
    import tempfile

    import numpy as np
    import torch
    from safetensors.torch import save_file

    from florist_grpc.fl.data import read_arrays
    from florist_grpc.fl.models import build_model
    from florist_grpc.fl.optimizers import build_optimizer

    with tempfile.TemporaryDirectory() as directory:
        np.savez(f"{directory}/d.npz", x=np.zeros((8, 4), dtype=np.float32), y=np.arange(8) % 2)
        x, y = read_arrays(Path(f"{directory}/d.npz"), "")
        model = build_model("MLP", (4,), 2, {})
        training = training_config(
            "FEDAVG", {"n_server_rounds": 1, "batch_size": 8, "local_epochs": 1, "learning_rate": 0.1}
        )
        optimizer = build_optimizer("SGD", model.parameters(), training)
        loss = torch.nn.functional.cross_entropy(model(torch.as_tensor(x)), torch.as_tensor(y))
        loss.backward()
        optimizer.step()
        save_file(model.state_dict(), f"{directory}/m.safetensors")
    return set(sys.modules) - before


def round_code_warm() -> bool:
    """Whether the code a client's round runs has been specialised already (Python 3.11 rewrites a function's
    instructions in place after its first runs): in a forked child, by the pool's warm-up (fl/warm_up.py)."""
    import torch

    codes = [torch.nn.Linear.forward.__code__, torch.optim.SGD.step.__code__, torch.nn.Module.__call__.__code__]
    return all(code._co_code_adaptive != code.co_code for code in codes)  # type: ignore[attr-defined]


def main() -> None:
    plan = json.loads(take_run_json())
    # SIGUSR1 ends a wait, then it exits with CODE. Blocked from the start and taken with sigwait: a signal sent as
    # soon as the process says ready would otherwise be handled before pause() and the wait would never end.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    extra = os.environ.get("FLORIST_SAMPLE", "")
    print(plan.get("print", ""), f"session={os.getsid(0)} pid={os.getpid()} env={extra}", flush=True)
    if plan.get("warm"):
        print(f"warm={round_code_warm()}", flush=True)
    if plan.get("train"):
        print("imported=" + ",".join(sorted(first_round_imports())), flush=True)
    if plan.get("ready"):
        signal_ready()
    if plan.get("wait"):
        signal.sigwait({signal.SIGUSR1})
    sys.exit(int(plan.get("exit", 0)))


if __name__ == "__main__":
    main()
