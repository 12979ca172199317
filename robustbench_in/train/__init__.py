"""Local training and fine-tuning: recipes from the ``train`` config group, augmentation from the corruption
registry on the device, exact resume from checkpoints, DistributedDataParallel under torchrun."""

from robustbench_in.train.spec import AugMixSpec, CorruptionAugSpec, DistillSpec, TrainSpec

__all__ = ["AugMixSpec", "CorruptionAugSpec", "DistillSpec", "TrainSpec"]
