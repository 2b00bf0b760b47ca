"""The torch optimizers behind the catalog's optimizer names, tuned by a job's training settings."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from florist_grpc.domain.catalog import OPTIMIZERS
from florist_grpc.domain.training import TrainingConfig


def build_optimizer(name: str, params: Iterable[torch.nn.Parameter], training: TrainingConfig) -> torch.optim.Optimizer:
    """Optimizer `name` over `params`; a setting the job left out takes this optimizer's own default."""
    defaults = OPTIMIZERS[name].defaults

    def setting(key: str, chosen: float | None) -> float:
        return defaults[key] if chosen is None else chosen

    lr, wd = setting("learning_rate", training.learning_rate), setting("weight_decay", training.weight_decay)
    if name == "SGD":
        return torch.optim.SGD(params, lr=lr, momentum=setting("momentum", training.momentum), weight_decay=wd)
    betas = (setting("beta_1", training.beta_1), setting("beta_2", training.beta_2))
    if name == "ADAM":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=wd)
    if name == "ADAMW":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=wd)
    raise KeyError(name)
