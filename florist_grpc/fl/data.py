"""Client datasets: read a data file, check it, and split it into train/validation the same way on every run.

Formats (by suffix): `.pt` (torch.save of {"x": tensor [N, *shape], "y": integer tensor [N]}), `.npz` (arrays
`x` and `y`), `.csv` (a header row; the label column named by the client's `label_column`, default "label";
every other column a numeric feature, so x is [N, columns - 1]).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from florist_grpc.fl.data_file import kind_problem, os_problem

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


# What an array holds when it is not what a dataset needs, named by the dtype's kind: the dtype itself can carry
# names from the file (a structured dtype's field names), and a message never quotes a file.
_KINDS = {
    "b": "booleans",
    "c": "complex numbers",
    "f": "floating-point numbers",
    "i": "integers",
    "u": "unsigned integers",
    "m": "time deltas",
    "M": "dates",
    "O": "Python objects",
    "S": "bytes",
    "U": "strings",
    "V": "raw or structured records",
}


def _open(path: Path) -> BinaryIO:
    """`path` opened for reading, or DataError: anything but a regular file is refused without blocking (opened
    O_NONBLOCK, so a named pipe put there after the control plane's check answers at once, by its kind)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        try:  # a socket cannot be opened at all: name it by its kind, as the control plane's check does
            problem = kind_problem(str(path), os.stat(path).st_mode)
        except OSError:
            problem = None
        raise DataError(problem or os_problem(str(path), exc)) from None
    try:
        if problem := kind_problem(str(path), os.fstat(fd).st_mode):
            raise DataError(problem)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_csv(file: BinaryIO, path: Path, label_column: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        rows = list(csv.reader(io.TextIOWrapper(file, encoding="utf-8", newline="")))
    except UnicodeDecodeError:
        raise DataError(f"data file {path} is not UTF-8 text, so not a CSV file") from None
    except csv.Error:
        raise DataError(f"data file {path} is not a CSV file Python's csv module can read") from None
    if not rows:
        raise DataError(f"data file {path} is empty")
    # The header is the file's content: messages count its columns, never quote them.
    header = [h.strip() for h in rows[0]]
    if label_column not in header:
        raise DataError(f"data file {path} has no label column {label_column!r} (its header has {len(header)} columns)")
    if len(header) < 2:
        raise DataError(f"data file {path} needs at least one feature column beside {label_column!r}")
    label_at = header.index(label_column)
    values = np.empty((len(rows) - 1, len(header)), dtype=np.float64)
    for n, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise DataError(f"data file {path}: line {n + 2} has {len(row)} fields, the header has {len(header)}")
        try:
            values[n] = [float(cell) for cell in row]
        except ValueError:
            column = next(j for j, cell in enumerate(row) if not _is_number(cell))
            raise DataError(
                f"data file {path}: line {n + 2} has a value that is not a number (column {column + 1})"
            ) from None
    labels = values[:, label_at]
    if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
        raise DataError(f"data file {path}: column {label_column!r} must hold integer class labels")
    features = np.delete(values, label_at, axis=1).astype(np.float32)
    return features, labels.astype(np.int64)


def _read_npz(file: BinaryIO, path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        loaded = np.load(file, allow_pickle=False)
    except Exception:  # numpy's errors quote the header they could not parse
        raise DataError(f"data file {path} is unreadable: not an .npz archive") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DataError(f"data file {path} is unreadable: one .npy array, not an .npz archive of 'x' and 'y'")
    with loaded as arrays:
        missing = [name for name in ("x", "y") if name not in arrays.files]
        if missing:  # the names it has are the file's content: not quoted
            raise DataError(
                f"data file {path} must hold arrays 'x' and 'y'; it has no {' and no '.join(map(repr, missing))}"
            )
        try:
            return np.asarray(arrays["x"]), np.asarray(arrays["y"])
        except Exception:
            raise DataError(f"data file {path} is unreadable: its arrays 'x' and 'y' are not .npy arrays") from None


def _read_torch(file: BinaryIO, path: Path) -> tuple[np.ndarray, np.ndarray]:
    import torch  # only here: probing .npz and .csv files stays fast

    try:
        # weights_only: a data file must never be able to run code.
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception:  # the unpickler's errors quote the bytes and names it refused
        raise DataError(f"data file {path} is unreadable: not a torch.save file of tensors") from None
    if not isinstance(obj, dict) or "x" not in obj or "y" not in obj:
        raise DataError(f"data file {path} must hold a dict with tensors 'x' and 'y'")
    x, y = obj["x"], obj["y"]
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise DataError(f"data file {path}: 'x' and 'y' must be tensors")
    try:
        return x.numpy(), y.numpy()
    except (TypeError, RuntimeError):  # e.g. bfloat16, sparse or quantized tensors
        raise DataError(f"data file {path}: 'x' and 'y' must be plain dense tensors") from None


def read_arrays(path: Path, label_column: str = "") -> tuple[np.ndarray, np.ndarray]:
    """The file's x and y as numpy arrays, or DataError naming the file and the kind of problem.

    A message says what is wrong (not a regular file, not a torch file, not an .npz, no 'x', a wrong dtype or
    shape) and never quotes the file: no reader's own error text reaches it, since those quote bytes, names
    and headers of the file, and a caller may name a file it could not read itself.
    """
    if path.suffix not in FORMATS:
        raise DataError(f"data file {path}: unknown format {path.suffix!r}; use one of {list(FORMATS)}")
    with _open(path) as file:
        if path.suffix == ".csv":
            return _read_csv(file, path, label_column or DEFAULT_LABEL_COLUMN)
        if path.suffix == ".npz":
            return _read_npz(file, path)
        return _read_torch(file, path)


def check_arrays(path: Path, x: np.ndarray, y: np.ndarray) -> list[str]:
    """Every problem of a dataset that no model could train on (empty when it is usable)."""
    problems = []
    if x.dtype.kind not in "fiu":
        problems.append(f"x must hold real numbers, not {_KINDS.get(x.dtype.kind, 'values of another kind')}")
    elif x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        problems.append("x holds NaN or infinite values")
    if y.dtype.kind not in "iu":
        problems.append(f"y must hold integer class labels, not {_KINDS.get(y.dtype.kind, 'values of another kind')}")
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
