"""Train-time augmentation on the device: corruptions from the registry, AugMix, and the consistency losses.

Both augmenters are batched tensor code with per-image parameters drawn from an explicit generator seeded by
(run seed, epoch, step), so a resumed run repeats them exactly. Inputs and outputs are float images in [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from corruptions.registry import apply_corruption, get_corruption, list_corruptions
from corruptions.rng import derive_seeds
from robustbench_in.train.spec import AugMixSpec, CorruptionAugSpec


def step_seed(seed: int, epoch: int, step: int) -> int:
    """One integer per (run seed, epoch, step): the seed of everything random in that step."""
    return ((seed * 1_000_003 + epoch) * 1_000_033 + step) % 2**62


class CorruptionAugmenter:
    """With probability ``p`` per image: a corruption drawn uniformly from the configured ones, at a severity
    drawn uniformly from ``severities``. Images that share (corruption, severity) go through it as one batch."""

    def __init__(self, spec: CorruptionAugSpec):
        names = list(dict.fromkeys([*spec.corruptions, *(n for c in spec.categories for n in list_corruptions(c))]))
        self.corruptions = [get_corruption(n) for n in names]
        self.p, self.severities = spec.p, list(spec.severities)
        if self.p > 0 and not self.corruptions:
            raise ValueError("train.augment.p > 0 but no corruptions: set train.augment.corruptions=[...] or "
                             "train.augment.categories=[noise,...]")

    @property
    def active(self) -> bool:
        return self.p > 0 and bool(self.corruptions)

    def __call__(self, images: torch.Tensor, image_ids: torch.Tensor, seed: int) -> torch.Tensor:
        if not self.active:
            return images
        g = torch.Generator().manual_seed(seed)
        n = images.shape[0]
        use = torch.rand(n, generator=g) < self.p
        which = torch.randint(len(self.corruptions), (n,), generator=g)
        severity = torch.tensor(self.severities)[torch.randint(len(self.severities), (n,), generator=g)]
        out = images.clone()
        for k, corruption in enumerate(self.corruptions):
            for s in self.severities:
                idx = torch.nonzero(use & (which == k) & (severity == s)).flatten()
                if len(idx):
                    seeds = derive_seeds(seed, image_ids[idx], corruption.name, s)
                    dev = idx.to(images.device)
                    out[dev] = apply_corruption(corruption, images[dev], s, seeds)
        return out


# ------------------------------------------------------------------------------------------------- AugMix


def _level(g: torch.Generator, n: int, severity: int) -> torch.Tensor:
    """AugMix's ``sample_level``: uniform in [0.1, severity], per image."""
    return 0.1 + torch.rand(n, generator=g) * (severity - 0.1)


def _sign(g: torch.Generator, n: int) -> torch.Tensor:
    return torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)


def _to_levels(x: torch.Tensor) -> torch.Tensor:
    return (x * 255.0).round_().clamp_(0, 255).to(torch.uint8)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Per-image affine warp (2x3 matrices in normalised coordinates), bilinear, black outside (PIL's fill)."""
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def autocontrast(x, g, severity):
    lo, hi = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    return torch.where(hi > lo, (x - lo) / (hi - lo).clamp_min(1e-8), x)


def equalize(x, g, severity):
    from torchvision.transforms.v2.functional import equalize as tv_equalize

    return tv_equalize(_to_levels(x)).to(x.dtype) / 255.0


def posterize(x, g, severity):
    bits = 4 - (_level(g, len(x), severity) * 4 / 10).long()  # keep 4 - int_parameter(level, 4) bits
    mask = ((0xFF << (8 - bits)) & 0xFF).to(torch.uint8).view(-1, 1, 1, 1).to(x.device)
    return (_to_levels(x) & mask).to(x.dtype) / 255.0


def solarize(x, g, severity):
    threshold = (256 - (_level(g, len(x), severity) * 256 / 10).long()).view(-1, 1, 1, 1).to(x.device)
    levels = _to_levels(x).long()
    return torch.where(levels >= threshold, 255 - levels, levels).to(x.dtype) / 255.0


def rotate(x, g, severity):
    degrees = (_level(g, len(x), severity) * 30 / 10).floor() * _sign(g, len(x))
    rad = degrees * math.pi / 180
    cos, sin = torch.cos(rad), torch.sin(rad)
    zero = torch.zeros_like(cos)
    return _affine(x, torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1))


def _shear(x, g, severity, axis: int):
    amount = _level(g, len(x), severity) * 0.3 / 10 * _sign(g, len(x))
    theta = torch.eye(2, 3).repeat(len(x), 1, 1)
    theta[:, axis, 1 - axis] = amount
    return _affine(x, theta)


def _translate(x, g, severity, axis: int):
    size = x.shape[-1] if axis == 0 else x.shape[-2]
    pixels = (_level(g, len(x), severity) * (size / 3) / 10).floor() * _sign(g, len(x))
    theta = torch.eye(2, 3).repeat(len(x), 1, 1)
    theta[:, axis, 2] = 2 * pixels / size
    return _affine(x, theta)


#: The AugMix ops (its ``augmentations`` list): none overlaps an ImageNet-C corruption.
AUGMIX_OPS = (
    autocontrast, equalize, posterize, rotate, solarize,
    lambda x, g, s: _shear(x, g, s, 0), lambda x, g, s: _shear(x, g, s, 1),
    lambda x, g, s: _translate(x, g, s, 0), lambda x, g, s: _translate(x, g, s, 1),
)


class AugMix:
    """The AugMix view of a batch: per image, ``width`` chains of random ops mixed with Dirichlet weights, then
    mixed with the image itself by m ~ Beta(alpha, alpha)."""

    def __init__(self, spec: AugMixSpec):
        self.spec = spec

    def _chain(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n = len(x)
        depth = (torch.full((n,), self.spec.depth) if self.spec.depth > 0
                 else torch.randint(1, 4, (n,), generator=g))
        out = x
        for d in range(int(depth.max())):
            op = torch.randint(len(AUGMIX_OPS), (n,), generator=g)
            nxt = out.clone()
            for k, fn in enumerate(AUGMIX_OPS):
                idx = torch.nonzero((op == k) & (depth > d)).flatten()
                if len(idx):
                    dev = idx.to(x.device)
                    nxt[dev] = fn(out[dev], g, self.spec.severity).clamp_(0, 1)
            out = nxt
        return out

    def __call__(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        n = len(x)
        weights = torch.distributions.Dirichlet(torch.full((self.spec.width,), float(self.spec.alpha)))
        ws = _sample(weights, g, n).to(x)  # (n, width)
        m = _sample(torch.distributions.Beta(self.spec.alpha, self.spec.alpha), g, n).to(x).view(-1, 1, 1, 1)
        mix = sum(ws[:, i].view(-1, 1, 1, 1) * self._chain(x, g) for i in range(self.spec.width))
        return (1 - m) * x + m * mix


def _sample(dist: torch.distributions.Distribution, g: torch.Generator, n: int) -> torch.Tensor:
    """n samples of a Dirichlet/Beta drawn with an explicit generator (through Gamma variates)."""
    conc = dist.concentration if isinstance(dist, torch.distributions.Dirichlet) else torch.stack(
        [dist.concentration1, dist.concentration0])
    gamma = torch._standard_gamma(conc.expand(n, -1).contiguous(), generator=g)
    sample = gamma / gamma.sum(1, keepdim=True)
    return sample if isinstance(dist, torch.distributions.Dirichlet) else sample[:, 0]


# -------------------------------------------------------------------------------------------------- losses


def jensen_shannon(logits: list[torch.Tensor]) -> torch.Tensor:
    """The AugMix consistency loss: mean KL of each view's distribution to their mixture."""
    probs = [lg.float().softmax(1) for lg in logits]
    log_mixture = torch.clamp(sum(probs) / len(probs), 1e-7, 1).log()
    return sum(F.kl_div(log_mixture, p, reduction="batchmean") for p in probs) / len(probs)


def distillation(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) at temperature T, scaled by T^2 (Hinton et al., 2015)."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits.float() / t, 1), F.softmax(teacher_logits.float() / t, 1),
                    reduction="batchmean") * t * t
