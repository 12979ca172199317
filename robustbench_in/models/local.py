"""This project's own small architectures (source ``local``): for benchmarks and tests, never for real numbers."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class TinyCNN(nn.Module):
    """A small, fast 1000-way CNN: the model-only limit in benchmarks and the quick model in tests."""

    def __init__(self, num_classes: int = 1000, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1), nn.BatchNorm2d(4 * width), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


#: architecture name -> constructor(num_classes)
LOCAL_ARCHITECTURES: dict[str, Callable[[int], nn.Module]] = {"tiny_cnn": TinyCNN}
