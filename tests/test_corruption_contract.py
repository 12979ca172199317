"""One generic contract test for every registered corruption — built-in or plug-in — at every severity.

The contract (corruptions/__init__.py): ``fn(images, severity, seeds)`` returns new memory of the same shape,
dtype and device, finite and in [0, 1], never touches its input, draws all randomness of image i from
seeds[i] (so batch size and order do not matter, and a random corruption changes with the seed while a
deterministic one ignores it), and — per the ImageNet-C parameters — changes the image more as the severity
grows, except where the reference's own parameters say otherwise (``SEVERITY_PATTERN``).

The fixture images are synthetic (colour gradients, flat shapes with hard edges, fine texture) so the test
runs without the shared ImageNet samples; they are 224x224, where the parameters are exactly the reference's.
A new corruption is picked up automatically: add it to ``SEVERITY_PATTERN`` only if its reference
parameters are not ordered by strength.
"""

from __future__ import annotations

import ast
import functools
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import corruptions
from corruptions import (Corruption, CorruptionInputError, apply_corruption, apply_corruption_levels, derive_seeds,
                         get_corruption, list_corruptions)

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # examples/ is importable from the repository root
    sys.path.insert(0, str(REPO_ROOT))

import examples.my_corruptions  # noqa: E402,F401  (registers the worked-example plug-ins)

SIZE = 224
SEVERITIES = (1, 2, 3, 4, 5)
IMAGE_IDS = torch.tensor([1001, 2002, 3003])
RUN_SEED = 0

# Steps s -> s+1 of the mean change from the clean image: "+" grows (2% tolerance), "-" drops, "~" either.
# Everything not listed is "++++". Each exception follows from the reference parameters (imagenet_c_spec.md).
SEVERITY_PATTERN = {
    # iterations of pixel shuffling are 2, 1, 3, 2, 2 (§3.5): fewer passes, less change, despite a wider blur
    "glass_blur": "-+-+",
    # s2 -> s3 trades many small flakes (threshold 0.5, zoom 2) for fewer, larger, blurrier ones (0.9, 4, σ 8)
    # (§3.8); AlexNet's error also falls there (§5.3)
    "snow": "+~++",
    # (image, frost) weights (0.7, 0.7) -> (0.65, 0.7) (§3.9): s4 adds the same frost to a dimmer image, which
    # is a smaller change wherever the frost is brighter than the image; s5 dims more and adds more (either way)
    "frost": "++-~",
    # s3 -> s4 keeps the strength 2.5 and only lowers the fractal's decay 1.7 -> 1.5 (§3.10)
    "fog": "++~+",
    # s3 -> s4 switches from water droplets to mud splashes (§4.3): a different kind of change
    "spatter": "++~+",
    # saturation factors 0.3, 0.1, 2, 5, 20 (§4.4): s1-s2 desaturate, s3 saturates, i.e. changes less than s2
    "saturate": "+-++",
    # s1-s2 add a large random affine (±24.4, ±48.8 px), s3-s5 only ±4.88 px plus local jitter (§3.13)
    "elastic_transform": "+-++",
    # a displacement: on the fixture's periodic texture, |image - shifted image| is not monotone in the shift
    # (s2 -> s3 moves rows by ~27 vs ~36 px); tests/test_sensor.py checks the growth on real photographs
    "rolling_shutter": "+~++",
}
RELATIVE_TOLERANCE = 0.02


def synthetic_images(n: int = 3, height: int = SIZE, width: int = SIZE, seed: int = 0) -> torch.Tensor:
    """Natural-ish images: a colour gradient, discs and rectangles with hard edges, a fine texture."""
    g = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, height).view(height, 1).expand(height, width)
    x = torch.linspace(0, 1, width).view(1, width).expand(height, width)
    out = []
    for _ in range(n):
        start, end = torch.rand(3, 1, 1, generator=g), torch.rand(3, 1, 1, generator=g)
        angle = torch.rand(1, generator=g).item() * math.pi
        t = (x * math.cos(angle) + y * math.sin(angle)).clamp(0, 1)
        img = start * (1 - t) + end * t
        for _ in range(3):
            cx, cy, r = (torch.rand(3, generator=g) * torch.tensor([1.0, 1.0, 0.3])).tolist()
            disc = ((x - cx) ** 2 + (y - cy) ** 2 < (0.08 + r) ** 2).float()
            img = img * (1 - disc) + torch.rand(3, 1, 1, generator=g) * disc
            x0, y0 = (torch.rand(2, generator=g) * 0.7).tolist()
            rect = ((x > x0) & (x < x0 + 0.25) & (y > y0) & (y < y0 + 0.2)).float()
            img = img * (1 - rect) + torch.rand(3, 1, 1, generator=g) * rect
        fx, fy = (6 + 20 * torch.rand(2, generator=g)).tolist()
        texture = (0.06 * torch.sin(2 * math.pi * (fx * x + fy * y))
                   + 0.04 * (torch.rand(height, width, generator=g) - 0.5))
        out.append((0.1 + 0.8 * img + texture).clamp(0, 1))
    return torch.stack(out)


def _albumentations_corruptions() -> list[Corruption]:
    """The albumentations example suite's corruptions, when the optional dependency is installed."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    try:
        import albumentations  # noqa: F401
    except ImportError:
        return []
    from corruptions.adapters import albumentations_corruptions_from_yaml

    return albumentations_corruptions_from_yaml(REPO_ROOT / "conf" / "suite" / "albumentations_example.yaml")


# every registered corruption at collection time (built-ins, installed plug-ins, the worked example) + adapters
CORRUPTIONS: dict[str, Corruption] = {name: get_corruption(name) for name in list_corruptions()}
CORRUPTIONS.update({c.name: c for c in _albumentations_corruptions()})
NAMES = list(CORRUPTIONS)
IMAGES = synthetic_images()
PRISTINE = IMAGES.clone()


pytestmark = pytest.mark.usefixtures("one_thread")


def common_seeds(name: str, run_seed: int = RUN_SEED) -> torch.Tensor:
    """The same seeds at every severity (common random numbers): severities then differ only by their
    parameters, not by which random texture, angle or noise field an image happened to draw."""
    return derive_seeds(run_seed, IMAGE_IDS, name, 1)


@functools.lru_cache(maxsize=None)
def corrupted(name: str, severity: int) -> torch.Tensor:
    """The fixture batch under one cell (cached: the contract and the monotonicity tests share it)."""
    return apply_corruption(CORRUPTIONS[name], IMAGES, severity, common_seeds(name))


def test_every_builtin_and_the_example_plugins_are_covered():
    assert set(corruptions.IMAGENET_C) | set(corruptions.IMAGENET_C_EXTRA) <= set(NAMES)
    assert {"vignette", "color_cast"} <= set(NAMES)


# The published lists (Hendrycks & Dietterich, ICLR 2019), typed here on purpose: the spec that the registry's
# ``benchmark`` metadata, the one source of these names in the code, must reproduce.
PAPER_IMAGENET_C = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
PAPER_IMAGENET_C_EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")


def test_benchmark_sets_come_from_the_registry_in_the_papers_order():
    assert corruptions.IMAGENET_C == PAPER_IMAGENET_C
    assert corruptions.IMAGENET_C_EXTRA == PAPER_IMAGENET_C_EXTRA
    assert tuple(list_corruptions(benchmark="imagenet_c")) == PAPER_IMAGENET_C
    assert tuple(list_corruptions(benchmark="imagenet_c_extra")) == PAPER_IMAGENET_C_EXTRA
    assert corruptions.SENSOR == tuple(list_corruptions(benchmark="sensor")) == tuple(list_corruptions("sensor"))
    assert len(corruptions.SENSOR) == 13
    assert corruptions.IMAGENET_C_BAR == tuple(list_corruptions(benchmark="imagenet_c_bar"))
    assert len(corruptions.IMAGENET_C_BAR) == 10
    # list_corruptions(): the 15, the 4 extras, the sensor shifts, ImageNet-C-bar, then plug-ins (no benchmark set)
    builtins = [*PAPER_IMAGENET_C, *PAPER_IMAGENET_C_EXTRA, *corruptions.SENSOR, *corruptions.IMAGENET_C_BAR]
    assert list_corruptions()[:len(builtins)] == builtins
    assert all(get_corruption(n).benchmark == "" for n in list_corruptions()[len(builtins):])
    assert get_corruption("brightness").category == "weather"  # ImageNet-C's grouping


def test_the_library_never_imports_the_testbed():
    """corruptions/ is usable on its own: no module of it imports robustbench_in, statically or at run time."""
    package = REPO_ROOT / "corruptions"
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "robustbench_in" for n in names), f"{path.name} imports {names}"
    modules = ", ".join(f"corruptions.{p.stem}" for p in sorted(package.glob("*.py")) if p.stem != "__init__")
    code = f"import sys, {modules}; assert not [m for m in sys.modules if m.startswith('robustbench_in')]"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", NAMES)
def test_contract(name, severity):
    corruption = CORRUPTIONS[name]
    seeds = common_seeds(name)
    out = corrupted(name, severity)
    assert out.shape == IMAGES.shape and out.dtype == IMAGES.dtype and out.device == IMAGES.device
    assert out.data_ptr() != IMAGES.data_ptr()
    assert bool(torch.isfinite(out).all()) and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.equal(out, IMAGES), "the corruption left the images unchanged"

    raw = corruption.fn(IMAGES, severity, seeds)  # the plain function keeps the contract too, unenforced
    assert raw.shape == IMAGES.shape and raw.dtype == IMAGES.dtype and raw.data_ptr() != IMAGES.data_ptr()
    assert bool(torch.isfinite(raw).all()) and float(raw.min()) >= 0.0 and float(raw.max()) <= 1.0
    assert torch.equal(IMAGES, PRISTINE), "the input was modified in place"

    # determinism: the same seeds give the same tensor, whatever the batch size or order
    assert torch.equal(apply_corruption(corruption, IMAGES, severity, seeds), out)
    singles = torch.cat([apply_corruption(corruption, IMAGES[i:i + 1], severity, seeds[i:i + 1])
                         for i in range(len(IMAGES))])
    assert torch.equal(singles, out), "image i's result depends on the rest of the batch"
    flipped = apply_corruption(corruption, IMAGES.flip(0), severity, seeds.flip(0))
    assert torch.equal(flipped, out.flip(0)), "image i's result depends on its position in the batch"

    # randomness comes from the seeds (random corruptions) or not at all (deterministic ones)
    other = apply_corruption(corruption, IMAGES, severity, common_seeds(name, run_seed=RUN_SEED + 1))
    if corruption.random:
        # per image a random choice may be discrete (warm/cool, one of six frost textures) and coincide,
        # but a new run seed must change the batch as a whole
        assert not torch.equal(other, out), "declared random but a different run seed gave the same batch"
    else:
        assert torch.equal(other, out), "declared deterministic (random=False) but the seed changes the result"


@pytest.mark.parametrize("name", NAMES)
def test_severity_orders_the_change(name):
    change = [float((corrupted(name, s) - IMAGES).abs().mean()) for s in SEVERITIES]
    pattern = SEVERITY_PATTERN.get(name, "++++")
    for s, step in zip(SEVERITIES[:-1], pattern):
        low, high = change[s - 1], change[s]
        if step == "+":
            assert high >= low * (1 - RELATIVE_TOLERANCE), f"{name}: s{s + 1} changes less than s{s}: {change}"
        elif step == "-":
            assert high < low, f"{name}: s{s + 1} should change less than s{s} (reference parameters): {change}"
    assert change[-1] > change[0] or name in SEVERITY_PATTERN, f"{name}: severity 5 is not stronger: {change}"


@pytest.mark.parametrize("name", NAMES)
def test_contract_at_another_resolution(name):
    """Non-square, non-224 input (models at 240, 288, 384 ...): same contract, parameters scaled."""
    images = synthetic_images(2, 72, 100, seed=1)
    seeds = common_seeds(name)[:2]
    for severity in (1, 5):
        out = apply_corruption(CORRUPTIONS[name], images, severity, seeds)
        assert out.shape == images.shape and out.dtype == images.dtype
        assert bool(torch.isfinite(CORRUPTIONS[name].fn(images, severity, seeds)).all())
        singles = torch.cat([apply_corruption(CORRUPTIONS[name], images[i:i + 1], severity, seeds[i:i + 1])
                             for i in range(2)])
        assert torch.equal(singles, out)


BIG_BATCH = synthetic_images(32, 96, 128, seed=2)  # 147 KiB an image: blocked (~2 MiB) CPU paths split it


@pytest.mark.parametrize("name", NAMES)
def test_same_result_for_batch_sizes_1_7_32_and_shuffled(name):
    """Image i's result depends on its seed only: batches of 32, of 7 (the last one short), of 1 and a
    shuffled batch all give the same tensors."""
    corruption = CORRUPTIONS[name]
    seeds = derive_seeds(RUN_SEED, torch.arange(100, 132), name, 3)
    whole = apply_corruption(corruption, BIG_BATCH, 3, seeds)
    for size in (7, 1):
        parts = torch.cat([apply_corruption(corruption, BIG_BATCH[i:i + size], 3, seeds[i:i + size])
                           for i in range(0, 32, size)])
        assert torch.equal(parts, whole), f"batches of {size} differ from one batch of 32"
    order = torch.randperm(32, generator=torch.Generator().manual_seed(0))
    shuffled = apply_corruption(corruption, BIG_BATCH[order], 3, seeds[order])
    assert torch.equal(shuffled, whole[order]), "a shuffled batch must only permute the outputs"


LEVELS_NAMES = [name for name in NAMES if CORRUPTIONS[name].levels_fn is not None]


def test_the_8_bit_twins_are_the_ones_that_work_on_levels():
    assert set(LEVELS_NAMES) >= {"pixelate", "jpeg_compression", "motion_blur"}


@pytest.mark.parametrize("shape", [(3, 224, 224), (2, 72, 100), (2, 57, 31)])
@pytest.mark.parametrize("name", LEVELS_NAMES)
def test_the_8_bit_twin_gives_the_float_result_as_levels(name, shape):
    """``levels_fn`` (the engine's path for uint8 images) equals the float corruption of levels / 255, rounded,
    bit for bit, at every severity, at 224 and at sizes where other code paths run; its input stays untouched."""
    n, height, width = shape
    images = synthetic_images(n, height, width, seed=3)
    levels = (images * 255).round().to(torch.uint8)
    pristine = levels.clone()
    seeds = common_seeds(name)[:n]
    for severity in SEVERITIES:
        ours = apply_corruption_levels(CORRUPTIONS[name], levels, severity, seeds)
        floats = apply_corruption(CORRUPTIONS[name], levels.float() / 255, severity, seeds)
        assert ours.dtype == torch.uint8 and ours.shape == levels.shape and ours.data_ptr() != levels.data_ptr()
        assert torch.equal(ours.float() / 255, floats), f"{name} s{severity}: the 8-bit twin differs"
    assert torch.equal(levels, pristine)


def test_apply_corruption_levels_rejects_what_it_cannot_run():
    levels = torch.zeros(2, 3, 16, 16, dtype=torch.uint8)
    seeds = torch.arange(2)
    with pytest.raises(ValueError, match="gaussian_noise has no 8-bit version"):
        apply_corruption_levels("gaussian_noise", levels, 1, seeds)
    with pytest.raises(CorruptionInputError, match="pixelate: levels must be a uint8 tensor"):
        apply_corruption_levels("pixelate", levels.float(), 1, seeds)
    with pytest.raises(ValueError, match=r"seeds must have shape \(2,\)"):
        apply_corruption_levels("pixelate", levels, 1, torch.arange(3))
    with pytest.raises(ValueError, match="severity must be an integer 1-5"):
        apply_corruption_levels("pixelate", levels, 6, seeds)
    floats_back = Corruption("floats_back", fn=lambda x, s, seeds: x, levels_fn=lambda x, s, seeds: x.float() / 255)
    with pytest.raises(TypeError, match=r"floats_back: levels_fn returned \(2, 3, 16, 16\) torch.float32"):
        apply_corruption_levels(floats_back, levels, 1, seeds)
