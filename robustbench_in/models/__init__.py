"""Models: sources (torchvision, timm, bundled pip weights, local architectures, checkpoints) and a zoo of
pretrained entries (name -> architecture, weights, preprocessing), timm-style."""

from robustbench_in.models.checkpoint import CHECKPOINT_FORMAT, read_checkpoint, save_checkpoint
from robustbench_in.models.registry import (
    MODEL_SOURCES,
    ModelEntry,
    ModelError,
    ModelSpec,
    ZooEntry,
    create_model,
    get_zoo_entry,
    register_model_source,
    register_zoo_entry,
    zoo_entries,
)

__all__ = [
    "CHECKPOINT_FORMAT", "MODEL_SOURCES", "ModelEntry", "ModelError", "ModelSpec", "ZooEntry", "create_model",
    "get_zoo_entry", "read_checkpoint", "register_model_source", "register_zoo_entry", "save_checkpoint",
    "zoo_entries",
]
