"""Data: the 1000-class table (labels by wnid), datasets, the embedded photos, preprocessing and the loader."""

from robustbench_in.data.classes import ClassTable, imagenet_classes
from robustbench_in.data.datasets import (
    DATASETS,
    DataSpec,
    DatasetError,
    ImageItem,
    ImageList,
    build_dataset,
    register_dataset,
)
from robustbench_in.data.loader import ImageDataset, make_loader
from robustbench_in.data.preprocessing import STANDARD, Preprocessing

__all__ = [
    "ClassTable", "DATASETS", "DataSpec", "DatasetError", "ImageDataset", "ImageItem", "ImageList", "Preprocessing",
    "STANDARD", "build_dataset", "imagenet_classes", "make_loader", "register_dataset",
]
