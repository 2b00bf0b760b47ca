"""The torch modules behind the catalog's model names: the builtin ones here, plugins through their entry point.

Every builder has the plugin contract's signature: `(input_shape, num_classes, **model_config) -> nn.Module`,
with the sizes the control plane read from the clients' data (or fixed by the catalog entry).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from florist_grpc.domain.catalog import BUILTIN_MODELS

ModelBuilder = Callable[..., nn.Module]


class MLP(nn.Module):
    """Multi-layer perceptron over the flattened sample."""

    def __init__(
        self, input_shape: Sequence[int], num_classes: int, hidden_sizes: Sequence[int] = (64,), dropout: float = 0.0
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


class CNN(nn.Module):
    """3x3 convolutions (2x2 max-pooling while the image allows), then one dense layer, for [C, H, W] samples."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (16, 32),
        hidden_size: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"CNN needs samples shaped [channels, height, width], not {list(input_shape)}")
        in_channels, height, width = input_shape
        layers: list[nn.Module] = []
        for out_channels in channels:
            layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU()]
            if height >= 2 and width >= 2:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.Flatten(), nn.Linear(in_channels * height * width, hidden_size), nn.ReLU()]
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(hidden_size, num_classes))
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x))
        return out


class MnistCNN(nn.Module):
    """FLorist's MnistNet: two 5x5 convolutions with max-pooling, then two dense layers."""

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10) -> None:
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


BUILDERS: dict[str, ModelBuilder] = {"MLP": MLP, "CNN": CNN, "MNIST_CNN": MnistCNN}
assert set(BUILDERS) == set(BUILTIN_MODELS), "every builtin catalog entry needs a builder"


def builder(name: str) -> ModelBuilder:
    """The builder of a builtin model, or the callable a plugin's entry point loads to."""
    if name in BUILDERS:
        return BUILDERS[name]
    from florist_grpc.fl.plugins import load_plugin

    plugin: ModelBuilder = load_plugin(name)
    return plugin


def build_model(
    name: str, input_shape: Sequence[int], num_classes: int, model_config: dict[str, Any], seed: int = 0
) -> nn.Module:
    """A freshly initialised model; the same seed gives the same weights in every process."""
    make = builder(name)
    torch.manual_seed(seed)
    model = make(tuple(input_shape), num_classes, **model_config)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model {name} built a {type(model).__name__}, not a torch.nn.Module")
    return model
