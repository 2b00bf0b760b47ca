"""Client datasets: .pt and .npz with x and y, a deterministic split, and errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from florist_grpc.fl.data import DataError, load_split, write_synthetic


def test_pt_and_npz_files_load_and_split_the_same_way_every_time(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(50, 20)).astype(np.float32)
    y = np.arange(50) % 4
    np.savez(tmp_path / "c.npz", x=x, y=y)
    torch.save({"x": torch.from_numpy(x), "y": torch.from_numpy(y)}, tmp_path / "c.pt")
    a = load_split(tmp_path / "c.npz", "MLP", 0.2, seed=3)
    b = load_split(tmp_path / "c.pt", "MLP", 0.2, seed=3)
    assert len(a.train) == 40 and len(a.validation) == 10
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    assert torch.equal(a.validation.tensors[1], load_split(tmp_path / "c.pt", "MLP", 0.2, seed=3).validation.tensors[1])


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "does not exist"),
        (b"not a tensor file", "unreadable"),
        ({"x": torch.zeros(4, 7), "y": torch.zeros(4, dtype=torch.long)}, "[N, 20]"),
        ({"x": torch.zeros(4, 20), "y": torch.zeros(3, dtype=torch.long)}, "y has shape"),
        ({"x": torch.zeros(4, 20), "y": torch.full((4,), 9)}, "labels must be in 0..3"),
        ({"x": torch.zeros(4, 20), "y": torch.zeros(4)}, "integer class labels"),
        ({"inputs": torch.zeros(4, 20)}, "'x' and 'y'"),
    ],
)
def test_unusable_data_is_reported_with_the_file_and_the_problem(tmp_path: Path, content: object, problem: str) -> None:
    path = tmp_path / "client.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(DataError) as raised:
        load_split(path, "MLP")
    assert str(path) in str(raised.value) and problem in str(raised.value)


def test_synthetic_data_is_learnable_and_partitioned_iid_or_not(tmp_path: Path) -> None:
    iid = write_synthetic(tmp_path / "iid", 3, samples_per_client=400, iid=True)
    skewed = write_synthetic(tmp_path / "skewed", 3, samples_per_client=400, iid=False, seed=1)
    assert len(iid) == 3

    def majority_share(path: Path) -> float:
        return float((torch.bincount(torch.load(path)["y"], minlength=4).float() / 400).max())

    skewed_shares, iid_shares = [majority_share(p) for p in skewed], [majority_share(p) for p in iid]
    assert max(iid_shares) < 0.35  # IID: close to uniform over 4 classes
    assert min(skewed_shares) > max(iid_shares)  # every non-IID client is dominated more than any IID one
    # Learnable: nearest class mean on one client's data beats chance by far.
    data = torch.load(iid[0])
    means = torch.stack([data["x"][data["y"] == c].mean(0) for c in range(4)])
    predicted = torch.cdist(data["x"], means).argmin(1)
    assert float((predicted == data["y"]).float().mean()) > 0.6
