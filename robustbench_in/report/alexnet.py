"""AlexNet's published ImageNet-C top-1 errors: the normaliser of CE / mCE / relative mCE.

These are facts, not measurements of this project. Source (as recorded in ``docs/imagenet_c_spec.md`` §5.3):
the ``hendrycks/robustness`` README at commit ``76d9393`` (2019-10-10, PR #20 "Add AlexNet errors on
ImageNet-C"), torchvision AlexNet (``AlexNet_Weights.IMAGENET1K_V1``) on the released 50,000-image ImageNet-C
JPEGs; the severity averages equal AugMix's ``ALEXNET_ERR``. The clean error is torchvision's documented
acc@1 56.522 % -> 43.478 %.

Errors are fractions in [0, 1]. They only normalise meaningfully errors measured on the full ImageNet
validation set at all five severities (spec §5.2, trap 22): on a subset the ratio mixes sampling noise and a
different image distribution into a number that looks comparable with the literature but is not.
"""

from __future__ import annotations

from types import MappingProxyType

from corruptions import IMAGENET_C, IMAGENET_C_EXTRA

#: Where the numbers come from, for table captions and footnotes.
ALEXNET_SOURCE = "hendrycks/robustness README, commit 76d9393"

#: The 15 benchmark corruptions in the paper's order; mCE averages over exactly these (from the corruption registry).
BENCHMARK_CORRUPTIONS: tuple[str, ...] = IMAGENET_C

#: The four validation ("extra") corruptions: AlexNet errors exist, but they are excluded from mCE.
EXTRA_CORRUPTIONS: tuple[str, ...] = IMAGENET_C_EXTRA

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

#: AlexNet clean top-1 error (fraction).
ALEXNET_CLEAN_ERR: float = 0.43478

_TABLE = {
    # corruption: (s1, s2, s3, s4, s5) top-1 error, spec §5.3
    "gaussian_noise": (0.69528, 0.82542, 0.93554, 0.98138, 0.99452),
    "shot_noise": (0.71224, 0.85108, 0.93574, 0.98182, 0.99146),
    "impulse_noise": (0.78374, 0.89808, 0.94870, 0.98720, 0.99548),
    "defocus_blur": (0.65624, 0.73202, 0.85036, 0.91364, 0.94714),
    "glass_blur": (0.64308, 0.75054, 0.88806, 0.91622, 0.93344),
    "motion_blur": (0.58430, 0.70048, 0.82108, 0.89750, 0.92638),
    "zoom_blur": (0.70008, 0.76992, 0.80784, 0.84198, 0.87198),
    "snow": (0.71726, 0.88392, 0.86468, 0.91870, 0.94952),
    "frost": (0.61390, 0.79734, 0.88790, 0.89942, 0.93430),
    "fog": (0.67474, 0.76050, 0.84378, 0.87260, 0.94500),
    "brightness": (0.45140, 0.48502, 0.54048, 0.62166, 0.72440),
    "contrast": (0.64548, 0.76150, 0.88874, 0.97760, 0.99270),
    "elastic_transform": (0.52596, 0.70116, 0.55686, 0.64076, 0.80554),
    "pixelate": (0.52218, 0.54620, 0.73728, 0.87092, 0.91262),
    "jpeg_compression": (0.51002, 0.54718, 0.57294, 0.65458, 0.74778),
    "speckle_noise": (0.66192, 0.74440, 0.90246, 0.94548, 0.97268),
    "gaussian_blur": (0.54732, 0.70444, 0.82574, 0.89864, 0.95940),
    "spatter": (0.47196, 0.62194, 0.75052, 0.84132, 0.90182),
    "saturate": (0.59342, 0.65514, 0.51174, 0.70834, 0.82260),
}

if set(_TABLE) != {*BENCHMARK_CORRUPTIONS, *EXTRA_CORRUPTIONS}:  # the published table names exactly these
    raise RuntimeError(f"AlexNet's error table and the registry's ImageNet-C corruptions differ: "
                       f"{sorted(set(_TABLE) ^ {*BENCHMARK_CORRUPTIONS, *EXTRA_CORRUPTIONS})}")

#: corruption -> {severity: top-1 error}, read-only.
ALEXNET_ERR = MappingProxyType(
    {name: MappingProxyType(dict(zip(SEVERITIES, errs))) for name, errs in _TABLE.items()}
)

#: corruption -> mean over the five severities (what most code bases store; spec §5.2).
ALEXNET_MEAN_ERR = MappingProxyType({name: sum(errs) / len(errs) for name, errs in _TABLE.items()})
