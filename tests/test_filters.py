"""corruptions.filters against the libraries the reference generator called (spec §2.1, §2.3, §2.5)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from corruptions.filters import (
    border_indices,
    clipped_zoom,
    correlate2d_fft,
    fft_size,
    gaussian_filter,
    images_per_chunk,
    map_chunks,
    motion_blur,
    motion_blur_block,
    motion_blur_kernel,
    motion_blur_offsets,
    pad_images,
    zoom_crop,
    zoom_geometry,
)

imagecorruptions = pytest.importorskip("imagecorruptions.corruptions")


@pytest.fixture(scope="module")
def random_images() -> np.ndarray:
    """Three non-square 3-channel float64 images, (N, C, H, W)."""
    return np.random.default_rng(0).random((3, 3, 41, 29))


# ------------------------------------------------------------------ borders


@pytest.mark.parametrize("mode,np_mode", [("nearest", "edge"), ("reflect", "symmetric"), ("reflect101", "reflect")])
@pytest.mark.parametrize("size,pad", [(7, 2), (7, 7), (5, 23)])
def test_border_indices_match_numpy_pad(mode, np_mode, size, pad):
    signal = np.arange(size) * 10
    expected = np.pad(signal, (pad, pad + 1), mode=np_mode)
    assert np.array_equal(signal[border_indices(size, pad, pad + 1, mode).numpy()], expected)


# ------------------------------------------------------------------ gaussian_filter


@pytest.mark.parametrize("mode", ["nearest", "reflect"])
@pytest.mark.parametrize("sigma,truncate", [(0.7, 4.0), (1.0, 4.0), (3.0, 4.0), (6.0, 4.0), (2.44, 3.0),
                                            (12.0, 4.0),  # radius 48 > 29 px width: kernel longer than the image
                                            (30.0, 3.0)])  # 181 taps: the dense-matrix path
def test_gaussian_filter_matches_scipy(random_images, mode, sigma, truncate):
    ours = gaussian_filter(torch.from_numpy(random_images), sigma, truncate=truncate, mode=mode).numpy()
    ref = ndi.gaussian_filter(random_images, sigma=(0, 0, sigma, sigma), truncate=truncate, mode=mode)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_gaussian_filter_elastic_s1_kernel_on_single_channel():
    """Spec §3.13: sigma 170.8, truncate 3 (1025 taps) on a 224 field, half-sample reflect periodic extension."""
    field = np.random.default_rng(1).uniform(-1, 1, (2, 1, 224, 224))
    ours = gaussian_filter(torch.from_numpy(field), 170.8, truncate=3.0, mode="reflect").numpy()
    ref = ndi.gaussian_filter(field, sigma=(0, 0, 170.8, 170.8), truncate=3.0, mode="reflect")
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-13)


def test_gaussian_filter_float32_and_no_inplace(random_images):
    x = torch.from_numpy(random_images).float()
    before = x.clone()
    out = gaussian_filter(x, 2.0)
    assert out.dtype == torch.float32 and out.data_ptr() != x.data_ptr()
    assert torch.equal(x, before)
    ref = ndi.gaussian_filter(random_images, sigma=(0, 0, 2.0, 2.0), mode="nearest")
    np.testing.assert_allclose(out.numpy(), ref, atol=2e-6)


def test_gaussian_filter_rejects_unknown_mode(random_images):
    with pytest.raises(ValueError, match="mode"):
        gaussian_filter(torch.from_numpy(random_images), 1.0, mode="wrap")


# ------------------------------------------------------------------ clipped_zoom


def scipy_clipped_zoom(image_hwc: np.ndarray, factor: float) -> np.ndarray:
    """MK224's clipped_zoom (spec §2.3) generalised per axis: centre crop, scipy zoom order 1, trim."""
    out = image_hwc
    for axis in (0, 1):
        size = image_hwc.shape[axis]
        crop = int(np.ceil(size / float(factor)))
        top = (size - crop) // 2
        out = np.take(out, np.arange(top, top + crop), axis=axis)
    zoom = [1.0] * out.ndim
    zoom[0] = zoom[1] = factor
    out = ndi.zoom(out, zoom, order=1)
    for axis in (0, 1):
        size = image_hwc.shape[axis]
        trim = (out.shape[axis] - size) // 2
        out = np.take(out, np.arange(trim, trim + size), axis=axis)
    return out


@pytest.mark.parametrize("factor", [1.01, 1.03, 1.12, 1.13, 1.3, 2.0, 2.5, 3.0, 4.5])
@pytest.mark.parametrize("height,width", [(224, 224), (96, 131)])
def test_clipped_zoom_matches_scipy(factor, height, width):
    image = np.random.default_rng(2).random((height, width, 3))
    ours = clipped_zoom(torch.from_numpy(image).permute(2, 0, 1)[None], factor)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, scipy_clipped_zoom(image, factor), rtol=0, atol=1e-12)


@pytest.mark.parametrize("factor,expected", [(1.12, (200, 12, 224, 0)), (1.13, (199, 12, 225, 0)),
                                             (1.3, (173, 25, 225, 0)), (3, (75, 74, 225, 0)),
                                             (4.5, (50, 87, 225, 0)), (2.5, (90, 67, 225, 0))])
def test_zoom_geometry_table(factor, expected):
    """(crop, top, out, trim) of spec §2.3; trim 0 at 225 means the top-left window is kept."""
    assert zoom_geometry(224, factor) == expected


def test_clipped_zoom_identity_at_factor_one_and_new_memory():
    x = torch.rand(2, 3, 32, 40)
    out = clipped_zoom(x, 1.0)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()
    with pytest.raises(ValueError):
        clipped_zoom(x, 0.9)


# ------------------------------------------------------------------ motion blur


def test_motion_blur_kernel_is_imagemagick_one_sided_gaussian():
    for radius, width in [(10, 21), (12, 25), (15, 31), (20, 41)]:
        weights = motion_blur_kernel(radius, 5.0)
        assert weights.numel() == width
        assert weights.sum().item() == pytest.approx(1.0, abs=1e-12)
        assert torch.all(weights[1:] < weights[:-1])  # peak at offset 0, trailing one way
    ref = imagecorruptions.getMotionBlurKernel(31, 8)
    np.testing.assert_allclose(motion_blur_kernel(15, 8).numpy(), ref, rtol=1e-12)


@pytest.fixture(scope="module")
def motion_case():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (4, 48, 57, 3)).astype(np.uint8)
    angles = np.array([-44.3, 0.0, 17.9, 90.0 + 45.0 * rng.random()])  # the last one: snow-like steep angle
    return images, angles


@pytest.mark.parametrize("radius,sigma", [(10, 3), (15, 5), (15, 12), (20, 15), (12, 8)])
def test_motion_blur_matches_imagecorruptions_port(motion_case, radius, sigma):
    images, angles = motion_case
    ref = np.stack([imagecorruptions._motion_blur(im, radius, sigma, a) for im, a in zip(images, angles)])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).double() / 255.0
    ours = motion_blur(x, radius, sigma, torch.from_numpy(angles)).permute(0, 2, 3, 1).numpy() * 255.0
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)


def test_motion_blur_quantize_is_imagemagick_rounding(motion_case):
    """Step 5 of spec §2.5 on the float sum: floor(round(257·acc)/257); ~0.2 % of values are one above trunc."""
    images, angles = motion_case
    acc = np.stack([imagecorruptions._motion_blur(im, 15, 8, a) for im, a in zip(images, angles)])
    expected = np.floor(np.floor(257.0 * acc + 0.5) / 257.0)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    ours = motion_blur(x, 15, 8, torch.from_numpy(angles), quantize=True)
    assert ours.dtype == torch.float32
    ours8 = (ours.permute(0, 2, 3, 1).numpy() * 255.0).astype(np.uint8)  # truncation must give the level back
    assert np.array_equal(ours8, expected.astype(np.uint8))
    assert 0 < np.mean(expected != np.floor(acc)) < 0.02


def test_motion_blur_is_per_image_and_any_channel_count(motion_case):
    images, angles = motion_case
    gray = torch.from_numpy(images[..., 0]).double().unsqueeze(1) / 255.0  # (N, 1, H, W), as snow uses it
    batch = motion_blur(gray, 12, 4, torch.from_numpy(angles))
    for i in range(len(angles)):
        single = motion_blur(gray[i:i + 1], 12, 4, torch.from_numpy(angles[i:i + 1]))
        assert torch.equal(batch[i:i + 1], single)
    with pytest.raises(ValueError, match="one angle per image"):
        motion_blur(gray, 12, 4, torch.zeros(2))


def test_motion_blur_zero_angle_trails_to_the_right():
    """θ = 0: every output pixel averages itself and the pixels to its right (positive x), none to the left."""
    x = torch.zeros(1, 1, 5, 40, dtype=torch.float64)
    x[..., 20] = 1.0
    out = motion_blur(x, 10, 3, torch.zeros(1))[0, 0, 2]
    assert out[21:].abs().max() == 0 and out[:21].sum() == pytest.approx(1.0) and out[20] == out.max()


def test_motion_blur_fused_and_looped_paths_agree(motion_case):
    """The CPU path (one embedding_bag) and the device path (index_select per tap) are the same sum."""
    images, angles = motion_case
    x = torch.from_numpy(images).permute(0, 3, 1, 2).double() / 255.0
    taps = motion_blur_kernel(12, 5).tolist()
    dx, dy = motion_blur_offsets(len(taps), torch.from_numpy(angles))
    for quantize in (False, True):
        fused = motion_blur_block(x, taps, dx, dy, quantize, fused=True)
        looped = motion_blur_block(x, taps, dx, dy, quantize, fused=False)
        np.testing.assert_allclose(fused.numpy(), looped.numpy(), rtol=0, atol=0 if quantize else 1e-12)


# ------------------------------------------------------------------ padding, FFT correlation, blocks


@pytest.mark.parametrize("mode,np_mode", [("nearest", "edge"), ("reflect", "symmetric"), ("reflect101", "reflect")])
@pytest.mark.parametrize("pads", [(2, 3, 1, 4), (0, 5, 6, 0), (11, 11, 40, 40)])  # the last: pads beyond the size
def test_pad_images_matches_numpy_pad(random_images, mode, np_mode, pads):
    top, bottom, left, right = pads
    ours = pad_images(torch.from_numpy(random_images), top, bottom, left, right, mode).numpy()
    expected = np.pad(random_images, ((0, 0), (0, 0), (top, bottom), (left, right)), mode=np_mode)
    assert np.array_equal(ours, expected)


def test_fft_size_is_the_smallest_5_smooth_length():
    def smooth(n):
        for p in (2, 3, 5):
            while n % p == 0:
                n //= p
        return n == 1

    for n in range(1, 400):
        assert fft_size(n) == next(m for m in range(n, 2 * n + 2) if smooth(m)), n


@pytest.mark.parametrize("mode,nd_mode", [("nearest", "nearest"), ("reflect101", "mirror"), ("reflect", "reflect")])
def test_correlate2d_fft_matches_direct_correlation(random_images, mode, nd_mode):
    kernel = np.random.default_rng(4).random((7, 5))
    ours = correlate2d_fft(torch.from_numpy(random_images), torch.from_numpy(kernel), mode).numpy()
    expected = ndi.correlate(random_images, kernel[None, None], mode=nd_mode)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)  # float64 in, float64 transforms
    single = correlate2d_fft(torch.from_numpy(random_images).float(), torch.from_numpy(kernel), mode)
    assert single.dtype == torch.float32
    np.testing.assert_allclose(single.numpy(), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, None])
def test_map_chunks_gives_the_whole_batch_result(chunk):
    images = torch.rand(5, 3, 9, 7, generator=torch.Generator().manual_seed(0))
    scale = torch.arange(5, dtype=torch.float32) + 1

    def per_image(x, s):  # depends on each image only
        return x * s.view(-1, 1, 1, 1) + x.mean(dim=(1, 2, 3), keepdim=True)

    def into(x, s, out):
        out.copy_(per_image(x, s))

    expected = per_image(images, scale)
    assert torch.equal(map_chunks(per_image, images, scale, chunk=chunk), expected)
    filled = map_chunks(into, images, scale, chunk=chunk, fills_out=True)
    assert torch.equal(filled, expected) and filled.data_ptr() != images.data_ptr()
    assert map_chunks(into, images[:0], scale[:0], fills_out=True).shape == (0, 3, 9, 7)
    assert images_per_chunk(torch.zeros(64, 3, 224, 224)) == 3  # ~2 MiB of float32 pixels per block


def test_zoom_crop_is_clipped_zoom_of_the_centre_crop():
    x = torch.rand(2, 1, 40, 52, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    for factor in (1.0, 1.13, 2.5):
        (ch, top, _, _), (cw, left, _, _) = zoom_geometry(40, factor), zoom_geometry(52, factor)
        crop = x[..., top:top + ch, left:left + cw]
        assert torch.equal(zoom_crop(crop, 40, 52, factor), clipped_zoom(x, factor))
    with pytest.raises(ValueError, match="crop"):
        zoom_crop(x, 40, 52, 2.0)
