"""What the launcher pool runs once before it forks anything: a tiny round of training, on one thread.

Python 3.11 writes to a function's code object the first times it runs (its warm-up counter, then the
specialised instructions), and torch initialises caches on first use. Run first in each forked child, that code
copies every page it touches: ~16 MiB of each client's private memory was pages of the pool's objects, copied
after the fork. Run once in the pool, those writes are done before the fork and the pages stay shared.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from florist_grpc.fl.batches import batches
from florist_grpc.fl.models import build_model

SAMPLES = 16


def warm_up() -> None:
    """Build each builtin model kind once and train it a step with each optimizer, as a client round does.

    On one torch thread, set here and nowhere else: an op on more threads would start torch's thread pool, which
    a fork does not carry (the pool starts no thread). Children set their own thread counts (fl/process.py).
    """
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    for model_name, shape in (("MLP", [8]), ("CNN", [1, 4, 4])):
        data = TensorDataset(torch.randn(SAMPLES, *shape, generator=generator), torch.arange(SAMPLES) % 3)
        model = build_model(model_name, shape, 3, {}, 0)
        for optimizer in (
            torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
            torch.optim.Adam(model.parameters()),
        ):
            _step(model, optimizer, batches(data, 8, generator))
        weights = [v.detach().cpu().numpy() for v in model.state_dict().values()]
        model.load_state_dict(
            {k: torch.as_tensor(np.copy(v)) for k, v in zip(model.state_dict(), weights, strict=True)}
        )
        model.eval()
        with torch.no_grad():
            for x, y in batches(data, 8):
                float(torch.nn.functional.cross_entropy(model(x), y))


def _step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader[tuple[torch.Tensor, ...]]
) -> None:
    model.train()
    loss_fn = torch.nn.CrossEntropyLoss()
    for x, y in loader:
        optimizer.zero_grad()
        logits = model(x)
        loss = loss_fn(logits, y)
        loss.backward()
        optimizer.step()
        loss.item()
        int((logits.argmax(1) == y).sum())
