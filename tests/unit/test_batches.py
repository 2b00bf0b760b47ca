"""A built-in client's batches (fl/batches.py): DataLoader's own batches, fetched a batch at a time."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from florist_grpc.fl.batches import batches


class CountingDataset(TensorDataset):
    def __init__(self, *tensors: torch.Tensor) -> None:
        super().__init__(*tensors)
        self.fetches = 0

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        self.fetches += 1
        return super().__getitem__(index)


def dataset(n: int = 103) -> CountingDataset:
    generator = torch.Generator().manual_seed(7)
    return CountingDataset(torch.randn(n, 5, generator=generator), torch.randint(0, 4, (n,), generator=generator))


def epochs(loader: DataLoader[tuple[torch.Tensor, ...]], n: int) -> list[tuple[torch.Tensor, ...]]:
    return [tuple(t.clone() for t in batch) for _ in range(n) for batch in loader]


def test_shuffled_batches_are_the_ones_a_shuffling_dataloader_makes_epoch_after_epoch() -> None:
    data = dataset()
    expected = epochs(DataLoader(data, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(3)), 3)
    got = epochs(batches(data, 16, torch.Generator().manual_seed(3)), 3)
    assert len(got) == len(expected) == 3 * 7
    for (x, y), (ex, ey) in zip(got, expected, strict=True):
        assert torch.equal(x, ex) and torch.equal(y, ey) and y.dtype == ey.dtype
    assert not torch.equal(got[0][0], got[7][0])  # each epoch is shuffled anew


def test_without_a_generator_batches_keep_the_datasets_order_and_the_last_is_shorter() -> None:
    data = dataset()
    got = epochs(batches(data, 16), 1)
    assert [len(y) for _, y in got] == [16] * 6 + [7]
    assert torch.equal(torch.cat([x for x, _ in got]), data.tensors[0])


def test_the_dataset_is_indexed_once_per_batch_not_once_per_sample() -> None:
    data = dataset()
    epochs(batches(data, 16, torch.Generator().manual_seed(0)), 1)
    assert data.fetches == 7
