"""The torch modules behind the catalog's model names (florist_grpc/jobs/catalog.py)."""

from __future__ import annotations

import torch
from torch import nn

from florist_grpc.domain.catalog import MODELS


class MLP(nn.Module):
    def __init__(self, in_features: int, num_classes: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


class MnistCNN(nn.Module):
    """FLorist's MnistNet: two 5x5 convolutions with max-pooling, then two dense layers."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(8, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        out: torch.Tensor = self.fc2(torch.relu(self.fc1(x)))
        return out


def build_model(name: str, seed: int = 0) -> nn.Module:
    """A freshly initialised model; the same seed gives the same weights in every process."""
    spec = MODELS[name]
    torch.manual_seed(seed)
    if name == "MLP":
        return MLP(spec.input_shape[0], spec.num_classes)
    if name == "MNIST_CNN":
        return MnistCNN(spec.num_classes)
    raise KeyError(name)
