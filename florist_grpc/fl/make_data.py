"""Datasets partitioned over clients: scikit-learn's 8x8 digits (real, offline) or a fast synthetic set.

Partitions: `iid` (a shuffled even split) or `dirichlet` (for each class, the clients' shares are drawn from
Dirichlet(alpha): small alpha gives each client a skewed label mix, the usual non-IID benchmark).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SYNTHETIC_SHAPES = {"MLP": ((20,), 4), "MNIST_CNN": ((1, 28, 28), 10), "CNN": ((1, 8, 8), 4)}
FORMATS = ("pt", "npz", "csv")


def partition(
    labels: np.ndarray, n_clients: int, scheme: str = "iid", alpha: float = 0.5, seed: int = 0
) -> list[np.ndarray]:
    """Indices of each client's samples; every client gets at least 2 (so it can hold out a validation one)."""
    if n_clients < 1 or len(labels) < 2 * n_clients:
        raise ValueError(f"cannot split {len(labels)} samples over {n_clients} client(s)")
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        return [np.sort(part) for part in np.array_split(rng.permutation(len(labels)), n_clients)]
    if scheme != "dirichlet":
        raise ValueError(f"unknown partition {scheme!r}; use iid or dirichlet")
    if alpha <= 0:
        raise ValueError("alpha must be positive")
    for _ in range(100):  # redraw the rare split that leaves a client (almost) empty
        parts: list[list[int]] = [[] for _ in range(n_clients)]
        for cls in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == cls))
            shares = rng.dirichlet(np.full(n_clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(members)).astype(int)
            for client, chunk in enumerate(np.split(members, cuts)):
                parts[client] += chunk.tolist()
        if min(len(p) for p in parts) >= 2:
            return [np.sort(np.array(p, dtype=np.int64)) for p in parts]
    raise ValueError(f"Dirichlet({alpha}) left a client without data 100 times; raise alpha or lower --clients")


def write_client_files(
    out_dir: Path, x: np.ndarray, y: np.ndarray, parts: Sequence[np.ndarray], file_format: str = "pt"
) -> list[Path]:
    """One file per client: `client<i>.<format>` holding that client's x and y."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, indices in enumerate(parts):
        path = out_dir / f"client{i}.{file_format}"
        xs, ys = x[indices].astype(np.float32), y[indices].astype(np.int64)
        if file_format == "npz":
            np.savez(path, x=xs, y=ys)
        elif file_format == "csv":
            flat = xs.reshape(len(xs), -1)
            with open(path, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow([f"f{j}" for j in range(flat.shape[1])] + ["label"])
                writer.writerows([*map(float, row), int(label)] for row, label in zip(flat, ys, strict=True))
        elif file_format == "pt":
            import torch

            torch.save({"x": torch.from_numpy(xs), "y": torch.from_numpy(ys)}, path)
        else:
            raise ValueError(f"unknown format {file_format!r}; use one of {list(FORMATS)}")
        paths.append(path)
    return paths


def digits(image: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 handwritten digits (1,797 samples, 10 classes), pixels scaled to 0..1.

    Samples are [64] feature vectors, or [1, 8, 8] images with `image`.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    return (x.reshape(-1, 1, 8, 8) if image else x), data.target.astype(np.int64)


def synthetic(
    n: int, input_shape: Sequence[int] = (20,), num_classes: int = 4, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A learnable set: Gaussian class prototypes plus noise."""
    rng = np.random.default_rng(seed)
    dims = math.prod(input_shape)
    prototypes = rng.normal(0.0, 1.0, size=(num_classes, dims)).astype(np.float32)
    labels = rng.integers(0, num_classes, size=n)
    x = prototypes[labels] + rng.normal(0.0, 1.6, size=(n, dims)).astype(np.float32)
    return x.reshape(n, *input_shape), labels


def write_synthetic(
    out_dir: Path,
    n_clients: int,
    samples_per_client: int = 600,
    iid: bool = True,
    seed: int = 0,
    model: str = "MLP",
    file_format: str = "pt",
) -> list[Path]:
    """The synthetic set shaped for `model`, one file per client; non-IID uses Dirichlet(0.5) label mixes."""
    input_shape, num_classes = SYNTHETIC_SHAPES[model]
    x, y = synthetic(samples_per_client * n_clients, input_shape, num_classes, seed)
    parts = partition(y, n_clients, "iid" if iid else "dirichlet", 0.5, seed)
    return write_client_files(out_dir, x, y, parts, file_format)


def write_digits(
    out_dir: Path,
    n_clients: int,
    scheme: str = "iid",
    alpha: float = 0.5,
    seed: int = 0,
    image: bool = False,
    file_format: str = "pt",
) -> list[Path]:
    """The digits partitioned over `n_clients`, one file per client."""
    x, y = digits(image)
    return write_client_files(out_dir, x, y, partition(y, n_clients, scheme, alpha, seed), file_format)
