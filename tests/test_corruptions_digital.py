"""Digital corruptions (spec §3.11-3.15, §4.4, §2.6) and the faithful-JPEG step: fidelity and the contract.

Deterministic corruptions are compared with imagecorruptions (ICI) after the reference's uint8 truncation
(PSNR >= 35 dB at every severity), pixelate and JPEG also bit-exactly with PIL. elastic_transform follows MK224,
which ICI does NOT implement (ICI has a different elastic algorithm, spec §3.13), so it is checked against an
independent numpy/scipy/OpenCV re-implementation of MK224 (benchmarks/mk224.py, also the fidelity benchmark's
yardstick), pixel-wise with identical random draws (numpy's, and the corruption's own counter-based ones).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter1d

import imagecorruptions
from corruptions import derive_seeds, digital, get_corruption, rng
from corruptions.digital import (
    JPEG_QUALITY,
    PIXELATE_FACTOR,
    _reflect_gaussian_matrix_cpu,
    elastic_apply,
    elastic_parameters,
    jpeg_round_trip,
    pil_box_resize,
    pixelate_levels,
    pixelate_size,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import mk224  # noqa: E402  (the original generator's elastic_transform, numpy)
from conftest import psnr, seeds_for  # noqa: E402

DIGITAL = ("brightness", "contrast", "saturate", "pixelate", "jpeg_compression", "elastic_transform")
DETERMINISTIC = ("brightness", "contrast", "saturate", "pixelate", "jpeg_compression")
SEVERITIES = (1, 2, 3, 4, 5)




def as_reference_uint8(images: torch.Tensor) -> np.ndarray:
    """Our float output as the reference saves it: np.uint8(x * 255) (truncation), (N, H, W, 3)."""
    return np.floor(images.permute(0, 2, 3, 1).double().numpy() * 255.0).astype(np.uint8)




def pil_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


# ------------------------------------------------------------------------------------------- fidelity (ICI/PIL)


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_psnr_against_reference(name, severity, sample_batch, sample_uint8):
    ours = as_reference_uint8(get_corruption(name)(sample_batch, severity, seeds_for(name, severity)))
    reference = np.stack([imagecorruptions.corrupt(img, severity, name) for img in sample_uint8])
    assert psnr(ours, reference) >= 35.0


@pytest.mark.parametrize("severity", SEVERITIES)
def test_pixelate_is_bit_exact_with_pil_box(severity, sample_batch, sample_uint8):
    """MK224 resizes down and up with PIL BOX (ICI goes up with NEAREST; identical at 224, spec §3.14)."""
    small = int(224 * PIXELATE_FACTOR[severity])
    expected = np.stack([np.asarray(Image.fromarray(img).resize((small, small), Image.BOX)
                                    .resize((224, 224), Image.BOX)) for img in sample_uint8])
    ours = get_corruption("pixelate")(sample_batch, severity, seeds_for("pixelate", severity))
    np.testing.assert_array_equal(np.round(ours.permute(0, 2, 3, 1).double().numpy() * 255), expected)


def test_pixelate_is_bit_exact_with_pil_box_off_the_reference_size():
    image = np.random.default_rng(0).integers(0, 256, (61, 97, 3), dtype=np.uint8)
    height, width = pixelate_size(61, 97, 4)
    expected = np.asarray(Image.fromarray(image).resize((width, height), Image.BOX).resize((97, 61), Image.BOX))
    images = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    ours = get_corruption("pixelate")(images, 4, torch.tensor([0]))
    np.testing.assert_array_equal(np.round(ours[0].permute(1, 2, 0).double().numpy() * 255), expected)


@pytest.mark.parametrize("int8", [True, False], ids=["int8-products", "float-box-sums"])
@pytest.mark.parametrize("size", [(224, 224), (300, 224), (256, 333), (61, 97)])
def test_pixelate_cpu_routes_are_bit_exact_with_pil_box(int8, size, monkeypatch):
    """Both CPU down-sampling routes, oneDNN int8 products (where torch has them) and exact float box sums, give
    Pillow's BOX result on the float and the 8-bit path. At 61 x 97 severities 1-4 grow the image to its
    intermediate (the block scales with the short side), which only the general route does."""
    if int8 and not digital._int8_mm_available():
        pytest.skip("this torch multiplies no int8 matrices on CPU (no oneDNN): the float route is the CPU path")
    calls, box_down_int8 = [], digital._box_down_int8
    monkeypatch.setattr(digital, "_int8_mm_available", lambda: int8)
    monkeypatch.setattr(digital, "_box_down_int8", lambda *args: calls.append(args) or box_down_int8(*args))
    height, width = size
    images = np.random.default_rng(height * width).integers(0, 256, (2, height, width, 3), dtype=np.uint8)
    levels = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    shrinking = 0
    for severity in SEVERITIES:
        small_h, small_w = pixelate_size(height, width, severity)
        shrinking += small_h <= height and small_w <= width
        expected = np.stack([np.asarray(Image.fromarray(image).resize((small_w, small_h), Image.BOX)
                                        .resize((width, height), Image.BOX)) for image in images])
        ours = pixelate_levels(levels, severity, torch.arange(2))
        np.testing.assert_array_equal(ours.permute(0, 2, 3, 1).numpy(), expected, err_msg=f"s{severity}")
        floats = get_corruption("pixelate")(levels.float() / 255, severity, torch.arange(2))
        assert torch.equal(floats, ours.float() / 255), f"s{severity}: the float path differs"
    assert len(calls) == (2 * shrinking if int8 else 0)  # the 8-bit and the float path


@pytest.mark.parametrize("severity", SEVERITIES)
def test_jpeg_compression_is_bit_exact_with_pil(severity, sample_batch, sample_uint8):
    expected = np.stack([pil_jpeg(img, JPEG_QUALITY[severity]) for img in sample_uint8])
    ours = get_corruption("jpeg_compression")(sample_batch, severity, seeds_for("jpeg_compression", severity))
    np.testing.assert_array_equal(np.round(ours.permute(0, 2, 3, 1).double().numpy() * 255), expected)


def test_jpeg_round_trip_truncates_then_matches_pil_quality_85(sample_batch, sample_uint8):
    """0.7 of a level above each clean value: truncation gives the clean image back, rounding would not."""
    nudged = sample_batch + 0.7 / 255.0
    out = jpeg_round_trip(nudged)
    expected = np.stack([pil_jpeg(img, 85) for img in sample_uint8])
    assert out.dtype == nudged.dtype and out.shape == nudged.shape
    np.testing.assert_array_equal(np.round(out.permute(0, 2, 3, 1).double().numpy() * 255), expected)
    low_quality = jpeg_round_trip(sample_batch, quality=10)
    assert psnr(as_reference_uint8(low_quality), expected) < psnr(as_reference_uint8(out), expected)


def test_jpeg_round_trip_keeps_levels_that_float32_puts_a_hair_below():
    levels = torch.arange(256, dtype=torch.float64).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    hair_below = (levels / 255.0 - 1e-7).clamp(0, 1).float()
    out = jpeg_round_trip(hair_below, quality=100)  # quality 100: near-lossless, so ~the levels come back
    assert (out * 255 - levels.float()).abs().mean().item() < 0.6
    assert jpeg_round_trip(torch.zeros(0, 3, 8, 8)).shape == (0, 3, 8, 8)
    with pytest.raises(ValueError):
        jpeg_round_trip(torch.zeros(1, 3, 8, 8), quality=0)


def test_closed_forms_on_neutral_and_black_pixels():
    """Spec V12: saturate gives greys a red tint at s4/s5; brightness turns black into grey c."""
    pixels = torch.tensor([128, 255, 0], dtype=torch.float32).view(3, 1, 1, 1).expand(3, 3, 1, 1) / 255.0
    seeds = torch.zeros(3, dtype=torch.int64)
    s4 = np.floor(get_corruption("saturate")(pixels, 4, seeds).double().numpy() * 255 + 1e-6).reshape(3, 3)
    s5 = np.floor(get_corruption("saturate")(pixels, 5, seeds).double().numpy() * 255 + 1e-6).reshape(3, 3)
    np.testing.assert_array_equal(s4, [[128, 115, 115], [255, 229, 229], [0, 0, 0]])
    np.testing.assert_array_equal(s5, [[128, 102, 102], [255, 204, 204], [0, 0, 0]])
    bright = get_corruption("brightness")(pixels, 3, seeds)
    assert torch.allclose(bright[2], torch.full((3, 1, 1), 0.3))


def test_contrast_uses_per_channel_means():
    images = torch.zeros(1, 3, 4, 4)
    images[0, 0, :, :2] = 1.0  # red mean 0.5, green/blue flat at 0
    out = get_corruption("contrast")(images, 1, torch.tensor([0]))
    assert torch.allclose(out[0, 0, 0], torch.tensor([0.7, 0.7, 0.3, 0.3]))
    assert torch.equal(out[0, 1:], images[0, 1:])


# ---------------------------------------------------------------------------------------------- elastic (MK224)


def assert_close_to_mk224(ours: torch.Tensor, expected: np.ndarray) -> None:
    difference = np.abs(ours.permute(0, 2, 3, 1).double().numpy() * 255 - expected)
    assert difference.max() < 0.05, difference.max()  # grey levels: float32 rounding only
    assert psnr(as_reference_uint8(ours), np.uint8(expected)) >= 35.0


@pytest.mark.parametrize("severity", [1, 5])
def test_elastic_apply_matches_mk224_for_numpy_draws(severity, sample_batch, sample_uint8):
    rs = np.random.RandomState(severity)
    alpha, sigma, eps = mk224.ELASTIC[severity]
    jitter = rs.uniform(-eps, eps, (4, 3, 2))
    noise_x, noise_y = rs.uniform(-1, 1, (4, 224, 224)), rs.uniform(-1, 1, (4, 224, 224))
    expected = np.stack([mk224.elastic_with_draws(sample_uint8[i], severity, jitter[i], noise_x[i], noise_y[i]) for i in range(4)])
    ours = elastic_apply(sample_batch, torch.from_numpy(jitter), torch.from_numpy(noise_x), torch.from_numpy(noise_y),
                         alpha, sigma)
    assert_close_to_mk224(ours, expected)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_elastic_transform_is_mk224_fed_with_its_documented_draws(severity, sample_batch, sample_uint8):
    """The full corruption against MK224 given the same numbers: the docstring's streams (0: control-point
    jitter U(-eps, eps) in float64, 1: dx field U(-1, 1) in float32, 2: dy field). A statistical comparison with
    independent draws would be weak: the random affine alone moves the mean change of one image by +-30 %."""
    seeds = seeds_for("elastic_transform", severity)
    eps = mk224.ELASTIC[severity][2]
    jitter = ((2 * rng.uniform(seeds, (3, 2), stream=0, dtype=torch.float64) - 1) * eps).numpy()
    noise_x = (2 * rng.uniform(seeds, (224, 224), stream=1, dtype=torch.float32) - 1).double().numpy()
    noise_y = (2 * rng.uniform(seeds, (224, 224), stream=2, dtype=torch.float32) - 1).double().numpy()
    expected = np.stack([mk224.elastic_with_draws(sample_uint8[i], severity, jitter[i], noise_x[i], noise_y[i]) for i in range(4)])
    ours = get_corruption("elastic_transform")(sample_batch, severity, seeds)
    assert_close_to_mk224(ours, expected)
    change = np.abs(as_reference_uint8(ours) - sample_uint8.astype(np.float64)).mean()
    assert change > 5.0, "a visible warp (reference mean change is ~14-45 levels per severity)"


@pytest.mark.parametrize("size,sigma", [(224, 170.8), (224, 2.44), (37, 19.52), (5, 2.44)])
def test_reflect_gaussian_matrix_equals_scipy(size, sigma):
    signal = np.random.default_rng(1).uniform(-1, 1, size)
    expected = gaussian_filter1d(signal, sigma, mode="reflect", truncate=3)
    np.testing.assert_allclose(_reflect_gaussian_matrix_cpu(size, sigma, 3.0).numpy() @ signal, expected, atol=1e-12)


def test_elastic_parameters_scale_with_resolution():
    for severity in SEVERITIES:
        assert elastic_parameters(severity, 1.0) == pytest.approx(mk224.ELASTIC[severity], rel=1e-12)
    alpha, sigma, jitter = elastic_parameters(3, 2.0)
    base = mk224.ELASTIC[3]
    assert (alpha, sigma, jitter) == pytest.approx((4 * base[0], 2 * base[1], 2 * base[2]))
    assert [pixelate_size(224, 224, s) for s in SEVERITIES] == [(134, 134), (112, 112), (89, 89), (67, 67), (56, 56)]
    assert pixelate_size(448, 448, 5) == (56, 56) and pixelate_size(224, 448, 2) == (112, 224)


# ---------------------------------------------------------------------------------------------------- contract


@pytest.mark.parametrize("name", DIGITAL)
def test_contract_range_shape_and_no_in_place_change(name, sample_batch):
    images = sample_batch.clone()
    fn = get_corruption(name).fn
    out = fn(images, 3, seeds_for(name, 3))  # the plain function, without the registry's safety net
    assert torch.equal(images, sample_batch), "input modified in place"
    assert out.shape == images.shape and out.dtype == images.dtype and out.data_ptr() != images.data_ptr()
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert (out - images).abs().mean().item() > 1e-3


@pytest.mark.parametrize("name", DIGITAL)
def test_same_seeds_same_result_whatever_the_batch(name, sample_batch):
    corruption = get_corruption(name)
    seeds = seeds_for(name, 5)
    full = corruption(sample_batch, 5, seeds)
    singles = torch.cat([corruption(sample_batch[i:i + 1], 5, seeds[i:i + 1]) for i in range(4)])
    assert torch.equal(full, singles)
    order = torch.tensor([3, 1, 0, 2])
    assert torch.equal(corruption(sample_batch[order], 5, seeds[order]), full[order])


def test_elastic_seeds_matter(sample_batch):
    corruption = get_corruption("elastic_transform")
    a = corruption(sample_batch, 2, seeds_for("elastic_transform", 2, run_seed=0))
    b = corruption(sample_batch, 2, seeds_for("elastic_transform", 2, run_seed=1))
    assert (a - b).abs().mean().item() > 0.01
    for name in DETERMINISTIC:  # and the deterministic ones ignore them
        assert torch.equal(get_corruption(name)(sample_batch[:1], 2, torch.tensor([1])),
                           get_corruption(name)(sample_batch[:1], 2, torch.tensor([2])))


@pytest.mark.parametrize("name", DIGITAL)
def test_float64_and_non_square_sizes(name):
    images = torch.rand(2, 3, 40, 70, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = get_corruption(name)(images, 5, torch.tensor([1, 2]))
    assert out.dtype == torch.float64 and out.shape == images.shape


def test_registry_metadata():
    expected = {"brightness": "weather", "contrast": "digital", "saturate": "digital", "pixelate": "digital",
                "jpeg_compression": "digital", "elastic_transform": "digital"}
    for name, category in expected.items():
        entry = get_corruption(name)
        assert entry.category == category and sorted(entry.params) == list(SEVERITIES)
        assert entry.random == (name == "elastic_transform")
    assert get_corruption("jpeg_compression").params[1] == {"quality": 25}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", DIGITAL)
def test_cuda_matches_cpu(name, sample_batch):
    seeds = seeds_for(name, 3)
    cpu = get_corruption(name)(sample_batch, 3, seeds)
    gpu = get_corruption(name)(sample_batch.cuda(), 3, seeds.cuda())
    assert gpu.is_cuda
    assert (gpu.cpu() - cpu).abs().max().item() < 1e-4
    assert jpeg_round_trip(sample_batch.cuda()).is_cuda


@pytest.mark.parametrize("size", [(23, 40), (61, 97), (150, 131), (97, 61)])
def test_pil_box_resize_is_bit_exact_for_any_size_pair(size):
    """Down, up and mixed resizes through the sparse taps: Pillow's BOX on one channel, level for level."""
    image = np.random.default_rng(size[0]).integers(0, 256, (61, 97), dtype=np.uint8)
    height, width = size
    expected = np.asarray(Image.fromarray(image).resize((width, height), Image.BOX))
    ours = pil_box_resize(torch.from_numpy(image).to(torch.int32)[None, None], height, width)
    assert ours.dtype == torch.int32
    np.testing.assert_array_equal(ours[0, 0].numpy(), expected)


def test_jpeg_codec_threads_change_nothing(sample_batch):
    """Images are coded on a thread pool of torch's thread count: 1 thread (inline) and 2 threads agree."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        inline = get_corruption("jpeg_compression")(sample_batch, 4, seeds_for("jpeg_compression", 4))
        torch.set_num_threads(2)
        pooled = get_corruption("jpeg_compression")(sample_batch, 4, seeds_for("jpeg_compression", 4))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(inline, pooled)


@pytest.mark.parametrize("quality", [7, 85])
def test_jpeg_codec_fallback_writes_what_torchvision_writes(quality, sample_uint8):
    """Pillow's codec (used where torchvision has dropped its own) decodes to the same pixels, byte for byte."""
    from corruptions.digital import _libjpeg_round_trip, _pil_jpeg_round_trip

    for image in sample_uint8[:4]:
        pixels = np.ascontiguousarray(image)
        np.testing.assert_array_equal(_pil_jpeg_round_trip(pixels, quality), _libjpeg_round_trip()(pixels, quality))
