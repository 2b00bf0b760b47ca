"""Client datasets: read a data file, check it, and split it into train/validation the same way on every run.

Formats (by suffix): `.pt` (torch.save of {"x": tensor [N, *shape], "y": integer tensor [N]}), `.npz` (arrays
`x` and `y`), `.csv` (a header row; the label column named by the client's `label_column`, default "label";
every other column a numeric feature, so x is [N, columns - 1]).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch.utils.data import TensorDataset

DEFAULT_LABEL_COLUMN = "label"
FORMATS = (".pt", ".npz", ".csv")


class DataError(Exception):
    """A dataset that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Split:
    train: TensorDataset
    validation: TensorDataset


def _read_csv(path: Path, label_column: str) -> tuple[np.ndarray, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise DataError(f"data file {path} is empty")
    header = [h.strip() for h in rows[0]]
    if label_column not in header:
        raise DataError(f"data file {path} has no label column {label_column!r}; its columns are {header}")
    if len(header) < 2:
        raise DataError(f"data file {path} needs at least one feature column beside {label_column!r}")
    label_at = header.index(label_column)
    values = np.empty((len(rows) - 1, len(header)), dtype=np.float64)
    for n, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise DataError(f"data file {path}: line {n + 2} has {len(row)} fields, the header has {len(header)}")
        try:
            values[n] = [float(cell) for cell in row]
        except ValueError as exc:
            raise DataError(f"data file {path}: line {n + 2} has a value that is not a number ({exc})") from exc
    labels = values[:, label_at]
    if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
        raise DataError(f"data file {path}: column {label_column!r} must hold integer class labels")
    features = np.delete(values, label_at, axis=1).astype(np.float32)
    return features, labels.astype(np.int64)


def read_arrays(path: Path, label_column: str = "") -> tuple[np.ndarray, np.ndarray]:
    """The file's x and y as numpy arrays, or DataError naming the file and what is wrong with it."""
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    if path.suffix not in FORMATS:
        raise DataError(f"data file {path}: unknown format {path.suffix!r}; use one of {list(FORMATS)}")
    try:
        if path.suffix == ".csv":
            return _read_csv(path, label_column or DEFAULT_LABEL_COLUMN)
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                if "x" not in arrays or "y" not in arrays:
                    raise DataError(f"data file {path} must hold arrays 'x' and 'y', has {sorted(arrays.files)}")
                return np.asarray(arrays["x"]), np.asarray(arrays["y"])
        import torch  # only here: probing .npz and .csv files stays fast

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
    try:
        return x.numpy(), y.numpy()
    except (TypeError, RuntimeError) as exc:  # e.g. bfloat16, sparse or quantized tensors
        raise DataError(f"data file {path}: 'x' and 'y' must be plain dense tensors ({exc})") from exc


def check_arrays(path: Path, x: np.ndarray, y: np.ndarray) -> list[str]:
    """Every problem of a dataset that no model could train on (empty when it is usable)."""
    problems = []
    if x.dtype.kind not in "fiu":
        problems.append(f"x must hold real numbers, not {x.dtype}")
    elif x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        problems.append("x holds NaN or infinite values")
    if y.dtype.kind not in "iu":
        problems.append(f"y must hold integer class labels, not {y.dtype}")
    if x.ndim < 2:
        problems.append(f"x has shape {list(x.shape)}; needs [N, *sample_shape]")
    if y.ndim != 1 or (x.ndim >= 1 and y.shape[0] != x.shape[0]):
        problems.append(f"y has shape {list(y.shape)}, needs [{x.shape[0] if x.ndim else 'N'}]")
    elif x.ndim >= 1 and x.shape[0] < 2:
        problems.append(f"needs at least 2 samples, has {x.shape[0]}")
    if y.dtype.kind in "iu" and y.size and int(y.min()) < 0:
        problems.append(f"labels must not be negative (smallest is {int(y.min())})")
    return [f"data file {path}: {p}" for p in problems]


def load_split(
    path: Path,
    input_shape: Sequence[int],
    num_classes: int,
    label_column: str = "",
    validation_fraction: float = 0.2,
    seed: int = 0,
) -> Split:
    """Load a client's data for a model of `input_shape` and `num_classes`; split it the same way on every run."""
    import torch
    from torch.utils.data import TensorDataset

    x_np, y_np = read_arrays(path, label_column)
    problems = check_arrays(path, x_np, y_np)
    if problems:
        raise DataError("; ".join(problems))
    if tuple(x_np.shape[1:]) != tuple(input_shape):
        raise DataError(
            f"data file {path}: x has shape {list(x_np.shape)}, the model needs [N, {', '.join(map(str, input_shape))}]"
        )
    if int(y_np.max()) >= num_classes:
        raise DataError(f"data file {path}: labels must be in 0..{num_classes - 1}")
    x, y = torch.as_tensor(x_np).float(), torch.as_tensor(y_np).long()
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(x.shape[0] * validation_fraction)) if validation_fraction > 0 else 0
    n_val = min(n_val, x.shape[0] - 1)
    val, train = order[:n_val], order[n_val:]
    if n_val == 0:
        val = train
    return Split(TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val]))
