"""The ``train`` config group: the recipe (optimiser, schedule, augmentation, losses) and where it resumes from.

Defaults are the standard ImageNet recipe (random-resized crop + flip, SGD with Nesterov momentum, cosine schedule
with linear warm-up, label smoothing 0.1, no weight decay on biases and norms); presets in ``conf/train/`` change
what a run needs. Device, precision, memory format, workers and the seed come from the ``runtime`` group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

OPTIMIZERS = ("sgd", "adamw")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass
class CorruptionAugSpec:
    """Per image, with probability ``p``: a random corruption of the list at a random severity, on the device."""

    p: float = 0.0
    corruptions: List[str] = field(default_factory=list)  # registry names ...
    categories: List[str] = field(default_factory=list)  # ... and/or every registered corruption of these categories
    severities: List[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    include_clean: bool = False  # train on the clean image as well (two views per image: clean, corrupted)

    def __post_init__(self) -> None:
        _check(0.0 <= self.p <= 1.0, f"train.augment.p={self.p} must be a probability (0-1)")
        _check(all(s in (1, 2, 3, 4, 5) for s in self.severities),
               f"train.augment.severities={list(self.severities)} must be integers 1-5")


@dataclass
class AugMixSpec:
    """AugMix (Hendrycks et al., ICLR 2020): ``width`` chains of ``depth`` ops (-1: 1-3 at random) mixed with
    Dirichlet(alpha) weights, then with the image by Beta(alpha, alpha); two such views and the clean image
    are tied by the Jensen-Shannon consistency loss, weighted by ``jsd_weight`` (12 in the paper)."""

    enabled: bool = False
    width: int = 3
    depth: int = -1
    severity: int = 3  # 1-10, the strength of each op (the paper's default is 3)
    alpha: float = 1.0
    jsd_weight: float = 12.0

    def __post_init__(self) -> None:
        _check(self.width >= 1 and (self.depth == -1 or self.depth >= 1),
               f"train.augmix: width={self.width} must be >= 1 and depth={self.depth} >= 1 (or -1)")
        _check(1 <= self.severity <= 10 and self.alpha > 0,
               f"train.augmix: severity={self.severity} must be 1-10 and alpha={self.alpha} > 0")


@dataclass
class DistillSpec:
    """Self-distillation: the frozen starting model's prediction on the clean image is the target for the
    (corrupted) view the student sees, so a pretrained model can be hardened on a small, unlabelled or
    class-imbalanced folder without drifting toward that folder's classes."""

    weight: float = 0.0  # > 0 turns it on
    temperature: float = 1.0

    def __post_init__(self) -> None:
        _check(self.weight >= 0 and self.temperature > 0,
               f"train.distill: weight={self.weight} must be >= 0 and temperature={self.temperature} > 0")


@dataclass
class TrainSpec:
    name: str = "standard"
    epochs: int = 90
    batch_size: int = 64  # per process
    max_steps_per_epoch: Optional[int] = None  # cut each epoch short (quick runs)
    optimizer: str = "sgd"  # sgd (Nesterov momentum) | adamw
    lr: float = 0.1  # at batch_size images per step; scale it with the total batch
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4  # not applied to biases and normalisation weights
    warmup_epochs: float = 1.0
    min_lr: float = 0.0  # cosine schedule from lr down to min_lr
    label_smoothing: float = 0.1
    label_weight: float = 1.0  # weight of the cross-entropy with the labels (0: distillation only, no labels)
    crop_scale: List[float] = field(default_factory=lambda: [0.08, 1.0])  # random-resized-crop area range
    hflip: bool = True
    freeze_bn: bool = False  # keep batch-norm statistics of the starting model (small-batch fine-tuning)
    val_fraction: float = 0.1  # held-out part of the training folder (by image, deterministic)
    val_root: Optional[str] = None  # or a separate <wnid>/ val folder
    augment: CorruptionAugSpec = field(default_factory=CorruptionAugSpec)
    augmix: AugMixSpec = field(default_factory=AugMixSpec)
    distill: DistillSpec = field(default_factory=DistillSpec)
    checkpoint_every_steps: Optional[int] = None  # also checkpoint inside an epoch
    resume: bool = False  # continue <run dir>/checkpoints/last.pt exactly where it stopped

    def __post_init__(self) -> None:
        _check(self.optimizer in OPTIMIZERS, f"train.optimizer={self.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
        _check(self.epochs >= 1 and self.batch_size >= 1,
               f"train.epochs={self.epochs} and train.batch_size={self.batch_size} must be >= 1")
        _check(self.lr > 0 and self.weight_decay >= 0 and 0 <= self.min_lr <= self.lr,
               f"train: need lr > 0 (got {self.lr}), weight_decay >= 0, 0 <= min_lr <= lr")
        _check(0.0 <= self.label_smoothing < 1.0, f"train.label_smoothing={self.label_smoothing} must be in [0, 1)")
        _check(0.0 <= self.val_fraction < 1.0, f"train.val_fraction={self.val_fraction} must be in [0, 1)")
        _check(len(self.crop_scale) == 2 and 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1,
               f"train.crop_scale={list(self.crop_scale)} must be [low, high] with 0 < low <= high <= 1")
        _check(self.label_weight > 0 or self.distill.weight > 0,
               "train.label_weight=0 needs train.distill.weight > 0: there would be nothing to learn from")
        _check(self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1,
               f"train.max_steps_per_epoch={self.max_steps_per_epoch} must be >= 1 (or null)")
        _check(self.checkpoint_every_steps is None or self.checkpoint_every_steps >= 1,
               f"train.checkpoint_every_steps={self.checkpoint_every_steps} must be >= 1 (or null)")
