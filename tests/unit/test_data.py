"""Client datasets: .pt, .npz and .csv, a deterministic split, the probe, and the partitioned datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from florist_grpc.fl.data import DataError, load_split
from florist_grpc.fl.make_data import digits, partition, write_digits, write_synthetic
from florist_grpc.fl.probe import probe


def test_pt_npz_and_csv_files_load_and_split_the_same_way_every_time(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(50, 20)).astype(np.float32)
    y = np.arange(50) % 4
    np.savez(tmp_path / "c.npz", x=x, y=y)
    torch.save({"x": torch.from_numpy(x), "y": torch.from_numpy(y)}, tmp_path / "c.pt")
    header = ",".join([*(f"f{i}" for i in range(10)), "target", *(f"f{i}" for i in range(10, 20))])
    rows = [
        ",".join([*map(repr, map(float, r[:10])), str(t), *map(repr, map(float, r[10:]))])
        for r, t in zip(x, y, strict=True)
    ]
    (tmp_path / "c.csv").write_text("\n".join([header, *rows]) + "\n")
    a = load_split(tmp_path / "c.npz", (20,), 4, "", 0.2, seed=3)
    b = load_split(tmp_path / "c.pt", (20,), 4, "", 0.2, seed=3)
    c = load_split(tmp_path / "c.csv", (20,), 4, "target", 0.2, seed=3)
    assert len(a.train) == 40 and len(a.validation) == 10
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    assert torch.equal(a.train.tensors[0], c.train.tensors[0]) and torch.equal(a.train.tensors[1], c.train.tensors[1])
    again = load_split(tmp_path / "c.pt", (20,), 4, "", 0.2, seed=3)
    assert torch.equal(a.validation.tensors[1], again.validation.tensors[1])


def _write(path: Path, content: object) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        torch.save(content, path)


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("c.pt", None, "does not exist"),
        ("c.pt", b"not a tensor file", "unreadable"),
        ("c.pt", {"x": torch.zeros(4, 20), "y": torch.zeros(3, dtype=torch.long)}, "y has shape"),
        ("c.pt", {"x": torch.zeros(4, 20), "y": torch.full((4,), -1)}, "must not be negative"),
        ("c.pt", {"x": torch.zeros(4, 20), "y": torch.zeros(4)}, "integer class labels"),
        ("c.pt", {"x": torch.zeros(4, 20, dtype=torch.bool), "y": torch.zeros(4, dtype=torch.long)}, "real numbers"),
        ("c.pt", {"x": torch.full((4, 20), float("nan")), "y": torch.zeros(4, dtype=torch.long)}, "NaN"),
        ("c.pt", {"x": torch.zeros(1, 20), "y": torch.zeros(1, dtype=torch.long)}, "at least 2 samples"),
        ("c.pt", {"inputs": torch.zeros(4, 20)}, "'x' and 'y'"),
        ("c.csv", "a,b,label\n1,2,0\n3,x,1\n", "not a number"),
        ("c.csv", "a,b,label\n1,2,0\n3,4\n", "has 2 fields"),
        ("c.csv", "a,b,target\n1,2,0\n3,4,1\n", "no label column 'label'"),
        ("c.csv", "a,b,label\n1,2,0.5\n3,4,1\n", "integer class labels"),
        ("c.parquet", "x", "unknown format"),
    ],
)
def test_unusable_data_is_reported_by_the_probe_and_the_loader_with_the_file_and_the_problem(
    tmp_path: Path, name: str, content: object, problem: str
) -> None:
    path = tmp_path / name
    _write(path, content)
    summary = probe(str(path))
    assert summary["problems"] and all(str(path) in p for p in summary["problems"])
    assert any(problem in p for p in summary["problems"]), summary["problems"]
    with pytest.raises(DataError) as raised:
        load_split(path, (20,), 4)
    assert str(path) in str(raised.value)


def test_the_probe_summarises_a_usable_file_and_the_loader_refuses_another_shape(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    torch.save({"x": torch.zeros(6, 3, 4, 4), "y": torch.tensor([0, 1, 2, 7, 1, 1])}, path)
    assert probe(str(path)) == {
        "path": str(path),
        "n": 6,
        "input_shape": [3, 4, 4],
        "label_min": 0,
        "label_max": 7,
        "problems": [],
    }
    with pytest.raises(DataError, match=r"\[N, 20\]"):
        load_split(path, (20,), 8)
    with pytest.raises(DataError, match=r"labels must be in 0\.\.3"):
        load_split(path, (3, 4, 4), 4)


def test_synthetic_data_is_learnable_and_partitioned_iid_or_not(tmp_path: Path) -> None:
    iid = write_synthetic(tmp_path / "iid", 3, samples_per_client=400, iid=True)
    skewed = write_synthetic(tmp_path / "skewed", 3, samples_per_client=400, iid=False, seed=1)
    assert len(iid) == 3

    def majority_share(path: Path) -> float:
        y = torch.load(path)["y"]
        return float((torch.bincount(y, minlength=4).float() / len(y)).max())

    skewed_shares, iid_shares = [majority_share(p) for p in skewed], [majority_share(p) for p in iid]
    assert max(iid_shares) < 0.35  # IID: close to uniform over 4 classes
    assert min(skewed_shares) > max(iid_shares)  # every non-IID client is dominated more than any IID one
    # Learnable: nearest class mean on one client's data beats chance by far.
    data = torch.load(iid[0])
    means = torch.stack([data["x"][data["y"] == c].mean(0) for c in range(4)])
    predicted = torch.cdist(data["x"], means).argmin(1)
    assert float((predicted == data["y"]).float().mean()) > 0.6


def test_digits_are_the_real_8x8_set_split_over_clients_without_loss(tmp_path: Path) -> None:
    x, y = digits()
    assert x.shape == (1797, 64) and set(np.unique(y)) == set(range(10)) and x.min() >= 0 and x.max() <= 1
    for scheme in ("iid", "dirichlet"):
        parts = partition(y, 3, scheme, alpha=0.5, seed=0)
        assert sorted(np.concatenate(parts).tolist()) == list(range(1797))  # every sample exactly once
    iid = [np.bincount(y[p], minlength=10) / len(p) for p in partition(y, 3, "iid")]
    skewed = [np.bincount(y[p], minlength=10) / len(p) for p in partition(y, 3, "dirichlet", alpha=0.1)]
    assert max(s.max() for s in iid) < 0.2 < max(s.max() for s in skewed)
    paths = write_digits(tmp_path, 2, image=True, file_format="npz")
    assert [probe(str(p))["input_shape"] for p in paths] == [[1, 8, 8], [1, 8, 8]]
    assert sum(probe(str(p))["n"] for p in paths) == 1797
