"""Client datasets: `.pt` (torch.save of {"x", "y"}) or `.npz` (arrays x and y), and a synthetic generator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from florist_grpc.domain.catalog import MODELS


class DataError(Exception):
    """A dataset that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Split:
    train: TensorDataset
    validation: TensorDataset


def _read(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                if "x" not in arrays or "y" not in arrays:
                    raise DataError(f"data file {path} must hold arrays 'x' and 'y', has {sorted(arrays.files)}")
                return torch.as_tensor(arrays["x"]), torch.as_tensor(arrays["y"])
        # weights_only: a data file must never be able to run code.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"data file {path} is unreadable: {exc}") from exc
    if not isinstance(obj, dict) or "x" not in obj or "y" not in obj:
        raise DataError(f"data file {path} must hold a dict with tensors 'x' and 'y'")
    x, y = obj["x"], obj["y"]
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise DataError(f"data file {path}: 'x' and 'y' must be tensors")
    return x, y


def load_split(path: Path, model: str, validation_fraction: float = 0.2, seed: int = 0) -> Split:
    """Load a client's data for `model` and split it into train/validation, the same way on every run."""
    spec = MODELS[model]
    x, y = _read(path)
    if tuple(x.shape[1:]) != spec.input_shape:
        raise DataError(
            f"data file {path}: x has shape {list(x.shape)}, "
            f"model {model} needs [N, {', '.join(map(str, spec.input_shape))}]"
        )
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DataError(f"data file {path}: y has shape {list(y.shape)}, needs [{x.shape[0]}]")
    if x.shape[0] < 2:
        raise DataError(f"data file {path}: needs at least 2 samples, has {x.shape[0]}")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise DataError(f"data file {path}: y must hold integer class labels, not {y.dtype}")
    if int(y.min()) < 0 or int(y.max()) >= spec.num_classes:
        raise DataError(f"data file {path}: labels must be in 0..{spec.num_classes - 1}")
    x, y = x.float(), y.long()
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(x.shape[0] * validation_fraction)) if validation_fraction > 0 else 0
    n_val = min(n_val, x.shape[0] - 1)
    val, train = order[:n_val], order[n_val:]
    if n_val == 0:
        val = train
    return Split(TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val]))


def write_synthetic(
    out_dir: Path,
    n_clients: int,
    samples_per_client: int = 600,
    iid: bool = True,
    seed: int = 0,
    model: str = "MLP",
) -> list[Path]:
    """A learnable classification set for `model` (Gaussian class prototypes plus noise), one .pt per client.

    Non-IID partitions give each client a skewed label mix (Dirichlet(0.5) class proportions).
    """
    spec = MODELS[model]
    rng = np.random.default_rng(seed)
    dims = int(np.prod(spec.input_shape))
    prototypes = rng.normal(0.0, 1.0, size=(spec.num_classes, dims)).astype(np.float32)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_clients):
        if iid:
            labels = rng.integers(0, spec.num_classes, size=samples_per_client)
        else:
            mix = rng.dirichlet(np.full(spec.num_classes, 0.5))
            labels = rng.choice(spec.num_classes, size=samples_per_client, p=mix)
        noise = rng.normal(0.0, 1.6, size=(samples_per_client, dims)).astype(np.float32)
        x = prototypes[labels] + noise
        path = out_dir / f"client{i}.pt"
        torch.save(
            {
                "x": torch.from_numpy(x.reshape(samples_per_client, *spec.input_shape)),
                "y": torch.from_numpy(labels).long(),
            },
            path,
        )
        paths.append(path)
    return paths
