"""robustbench_in's corruption library: batched, device-agnostic image corruptions behind one registry.

Contract (see ../docs and ``registry.py``): a corruption is ``fn(images, severity, seeds) -> images`` where
``images`` is a float tensor (N, 3, H, W) in [0, 1] on any device, ``severity`` an int 1-5 and ``seeds`` an
int64 tensor (N,) with one seed per image (``rng.derive_seeds``). All randomness for image i comes from
``seeds[i]`` through the counter-based generators in ``rng``; the result is new memory, same shape, device
and dtype, clipped to [0, 1]. Parameters are the ImageNet-C reference values at 224x224 and scale with the
image size elsewhere. This package never imports ``robustbench_in``: it can be used on its own.
"""

from corruptions.registry import (
    CATEGORIES,
    ENTRY_POINT_GROUP,
    SEVERITIES,
    Corruption,
    UnknownCorruptionError,
    add_corruption,
    apply_corruption,
    check_severity,
    get_corruption,
    list_corruptions,
    load_entry_points,
    register_corruption,
    unregister_corruption,
)
from corruptions.rng import derive_seeds

__version__ = "0.1.0"

# Importing the category modules registers the built-in corruptions (order = ImageNet-C order).
from corruptions import noise, blur, weather, digital, sensor  # noqa: E402,F401  isort: skip

IMAGENET_C = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
IMAGENET_C_EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")

# The camera/sensor-style shifts of ``corruptions.sensor`` (registry category "sensor").
SENSOR = (
    "sensor_noise", "low_light_noise", "overexposure", "hot_dead_pixels", "low_bit_depth", "bayer_demosaic",
    "vignetting", "chromatic_aberration", "lens_distortion", "rolling_shutter",
    "white_balance_error", "oversharpening", "double_jpeg",
)

__all__ = [
    "CATEGORIES", "ENTRY_POINT_GROUP", "SEVERITIES", "Corruption", "UnknownCorruptionError", "add_corruption",
    "apply_corruption", "check_severity", "derive_seeds", "get_corruption", "list_corruptions",
    "load_entry_points", "register_corruption", "unregister_corruption", "IMAGENET_C", "IMAGENET_C_EXTRA",
    "SENSOR",
]
