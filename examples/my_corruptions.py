"""A worked example of a plug-in module: two corruptions written outside the library.

Used by docs/plugins.md, ``conf/suite/plugin_example.yaml`` and the plug-in tests. Each function follows the
corruption contract: ``fn(images, severity, seeds) -> images`` with float images (N, 3, H, W) in [0, 1] on any
device, severity 1-5 and one int64 seed per image; batched torch ops only, so it runs wherever the images are.

Registering with ``@register_corruption`` makes the names usable in a suite as plain strings once this module
is imported (or advertised through an entry point); a suite can also select the functions directly with
``_target_: examples.my_corruptions.vignette`` — no registration needed for that path.
"""

from __future__ import annotations

import torch

from corruptions import register_corruption, rng

VIGNETTE_STRENGTH = {1: 0.15, 2: 0.3, 3: 0.45, 4: 0.6, 5: 0.75}  # darkening in the corners
COLOR_CAST_SHIFT = {1: 0.04, 2: 0.08, 3: 0.12, 4: 0.16, 5: 0.2}  # length of the RGB offset


@register_corruption("vignette", category="other", random=False,
                     params={s: {"corner_darkening": k} for s, k in VIGNETTE_STRENGTH.items()})
def vignette(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Lens vignetting: brightness falls off quadratically from the centre to the corners.

    The fall-off is defined on coordinates normalised to [-1, 1], so it looks the same at any resolution;
    corners keep 1 - strength of their brightness. Deterministic: ``seeds`` is unused.
    """
    h, w = images.shape[-2:]
    y = torch.linspace(-1, 1, h, device=images.device, dtype=images.dtype).view(h, 1)
    x = torch.linspace(-1, 1, w, device=images.device, dtype=images.dtype).view(1, w)
    gain = 1 - VIGNETTE_STRENGTH[severity] * (x * x + y * y) / 2
    return images * gain  # a new tensor: the input is never modified


@register_corruption("color_cast", category="other", random=True,
                     params={s: {"shift": v} for s, v in COLOR_CAST_SHIFT.items()})
def color_cast(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """A global colour cast (wrong white balance): every pixel moves by one random RGB offset per image.

    The offset's direction is drawn from the image's own seed (``corruptions.rng``, stream 0), so an image gets
    the same cast whatever batch it is in; its length grows with severity. Size-independent.
    """
    direction = rng.normal(seeds, (3,), stream=0, dtype=images.dtype)  # (N, 3), one draw per image
    direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-6)
    return (images + COLOR_CAST_SHIFT[severity] * direction.view(-1, 3, 1, 1)).clamp(0, 1)
