"""robustbench_in's corruption library: batched, device-agnostic image corruptions behind one registry.

Contract (see ../docs and ``registry.py``): a corruption is ``fn(images, severity, seeds) -> images`` where
``images`` is a float tensor (N, 3, H, W) in [0, 1] on any device, ``severity`` an int 1-5 and ``seeds`` an
int64 tensor (N,) with one seed per image (``rng.derive_seeds``). All randomness for image i comes from
``seeds[i]`` through the counter-based generators in ``rng``; the result is new memory, same shape, device
and dtype, clipped to [0, 1]. Parameters are the ImageNet-C reference values at 224x224 and scale with the
image size elsewhere. This package never imports ``robustbench_in``: it can be used on its own.

Corruptions whose result lies on the 8-bit grid (pixelate, jpeg_compression, motion_blur) also register an
8-bit twin, ``levels_fn``: uint8 levels in and out, the same result (``apply_corruption_levels``); the testbed
runs those on its decoded uint8 images and skips the float conversions.
"""

from corruptions.registry import (
    BENCHMARKS,
    CATEGORIES,
    ENTRY_POINT_GROUP,
    SEVERITIES,
    Corruption,
    CorruptionInputError,
    UnknownCorruptionError,
    add_corruption,
    apply_corruption,
    apply_corruption_levels,
    check_images,
    check_severity,
    get_corruption,
    list_corruptions,
    load_entry_points,
    register_corruption,
    unregister_corruption,
)
from corruptions.rng import derive_seeds

__version__ = "0.1.0"

# Importing the category modules registers the built-in corruptions. Keep ImageNet-C's category order: within a
# benchmark set, registration order is the order list_corruptions() and the tuples below give.
from corruptions import noise, blur, weather, digital, sensor, cbar  # noqa: E402,F401  isort: skip
from corruptions import registry  # noqa: E402  isort: skip

# The benchmark sets, read from the registry (every built-in registers with its ``benchmark``), in published order.
IMAGENET_C = tuple(registry.registered_names(benchmark="imagenet_c"))  # the 15 benchmark ones; mCE averages these
IMAGENET_C_EXTRA = tuple(registry.registered_names(benchmark="imagenet_c_extra"))  # the 4 held-out validation ones
SENSOR = tuple(registry.registered_names(benchmark="sensor"))  # the camera/sensor-style shifts (corruptions.sensor)
IMAGENET_C_BAR = tuple(registry.registered_names(benchmark="imagenet_c_bar"))  # the 10 ImageNet-C-bar ones

__all__ = [
    "BENCHMARKS", "CATEGORIES", "ENTRY_POINT_GROUP", "SEVERITIES", "Corruption", "CorruptionInputError",
    "UnknownCorruptionError", "add_corruption", "apply_corruption", "apply_corruption_levels",
    "check_images", "check_severity", "derive_seeds",
    "get_corruption", "list_corruptions", "load_entry_points", "register_corruption", "unregister_corruption",
    "IMAGENET_C", "IMAGENET_C_EXTRA", "SENSOR", "IMAGENET_C_BAR",
]
