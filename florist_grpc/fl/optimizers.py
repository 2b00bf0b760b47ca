"""The torch optimizers behind the catalog's optimizer names, tuned by server_config keys."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from florist_grpc.domain.catalog import OPTIMIZERS


def build_optimizer(name: str, params: Iterable[torch.nn.Parameter], config: dict[str, Any]) -> torch.optim.Optimizer:
    settings = {key: float(config.get(key, default)) for key, default in OPTIMIZERS[name].defaults.items()}
    lr, wd = settings["learning_rate"], settings["weight_decay"]
    if name == "SGD":
        return torch.optim.SGD(params, lr=lr, momentum=settings["momentum"], weight_decay=wd)
    betas = (settings["beta_1"], settings["beta_2"])
    if name == "ADAM":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=wd)
    if name == "ADAMW":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=wd)
    raise KeyError(name)
