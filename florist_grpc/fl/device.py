"""Which torch device an FL client trains on (ClientInfo.device)."""

from __future__ import annotations


def resolve_device(requested: str, cuda_devices: int) -> str:
    """`auto` = the first CUDA device when there is one, else the CPU; `cuda` = `cuda:0`; else as requested.

    Raises ValueError for a CUDA device this machine does not have (the job then fails naming it).
    """
    if requested in ("", "auto"):
        return "cuda:0" if cuda_devices else "cpu"
    if requested == "cpu":
        return "cpu"
    index = 0 if requested == "cuda" else int(requested.removeprefix("cuda:"))
    if index >= cuda_devices:
        raise ValueError(f"device {requested!r} requested, but this machine has {cuda_devices} CUDA device(s)")
    return f"cuda:{index}"
