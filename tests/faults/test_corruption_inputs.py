"""Hostile inputs to the corruption library (issue 11, items 6 and 8).

Item 6: ``apply_corruption`` must refuse images it would silently mangle (x255 input saturates, [-1, 1] input
clamps, a NaN pixel is zeroed or spreads over the whole image) with one line that names the corruption, what was
found and what to do; ``check_input=False`` turns the check off for speed. Item 8: every registered corruption
works at any size >= 1 px: finite, in [0, 1], same shape, and not degenerate (fog on a 1x1 grey image used to be
NaN, then black; double_jpeg, glass_blur and spatter raised).
"""

from __future__ import annotations

import pytest
import torch

import corruptions
from corruptions import CorruptionInputError, apply_corruption, derive_seeds, get_corruption, list_corruptions

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_SHAPES = [(1, 3, 1, 1), (1, 3, 1, 7), (1, 3, 7, 1), (2, 3, 2, 3), (1, 3, 4, 4), (1, 3, 5, 9)]


def clean(n: int = 2, size: int = 16) -> torch.Tensor:
    """A valid batch in [0, 1]."""
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def with_value(images: torch.Tensor, value: float, count: int = 1) -> torch.Tensor:
    """``images`` with ``count`` values of image 0 set to ``value`` (the rest untouched)."""
    bad = images.clone()
    bad[0, 0, 0, :count] = value
    return bad


# ------------------------------------------------------------------------------------------ item 6: input range


@pytest.mark.parametrize("name", ["contrast", "fog", "defocus_blur", "gaussian_noise"])
@pytest.mark.parametrize("case", ["x255", "minus_one_to_one", "nan", "inf"])
def test_out_of_range_or_non_finite_input_is_refused_in_one_line(name, case):
    x = clean()
    images, found = {"x255": (x * 255, r"values in \[0\.\d+, 25\d"),
                     "minus_one_to_one": (x * 2 - 1, r"values in \[-0\.\d+, 0\.\d+\]"),
                     "nan": (with_value(x, float("nan"), 3), "found 3 non-finite"),
                     "inf": (with_value(x, float("inf"), 4), "found 4 non-finite")}[case]
    with pytest.raises(CorruptionInputError, match=found) as err:
        apply_corruption(name, images, 3, torch.arange(images.shape[0]))
    message = str(err.value)
    assert isinstance(err.value, ValueError) and "\n" not in message
    assert message.startswith(f"{name}: ") and "[0, 1]" in message and "x.float() / 255" in message
    assert "check_input=False" in message


def test_the_class_api_checks_too_and_both_can_switch_it_off():
    x = clean() * 255
    fog = get_corruption("fog")
    with pytest.raises(CorruptionInputError, match="fog: .*values in"):
        fog(x, 2, torch.arange(2))
    # switched off: the old behaviour (clipped output), no error, for callers that know their data
    for out in (fog(x, 2, torch.arange(2), check_input=False),
                apply_corruption("fog", x, 2, torch.arange(2), check_input=False)):
        assert out.shape == x.shape and float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_nan_is_reported_even_when_the_finite_values_are_in_range():
    with pytest.raises(CorruptionInputError, match=r"found 1 non-finite value") as err:
        apply_corruption("contrast", with_value(clean(), float("nan")), 1, torch.arange(2))
    assert "values in" not in str(err.value)  # the finite values are fine: say only what is wrong


def test_float_rounding_just_outside_the_unit_interval_passes():
    """x / 255 * 255 / 255 and friends land a few ulps off [0, 1]: that is not an error."""
    x = clean()
    x[0, 0, 0, 0], x[0, 0, 0, 1] = 1.0000001, -1e-7
    x[1, 0, 0, 0] = 1.0 + 1e-6
    out = apply_corruption("fog", x, 1, torch.arange(2))
    assert torch.isfinite(out).all() and out.shape == x.shape
    for bad in (1.001, -0.001):
        x[1, 0, 0, 0] = bad
        with pytest.raises(CorruptionInputError):
            apply_corruption("fog", x, 1, torch.arange(2))


def test_the_check_accepts_every_valid_batch():
    """Empty batches, exact 0 and 1, half and double precision: nothing to refuse."""
    for images in (clean()[:0], torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4), clean().half(), clean().double()):
        out = apply_corruption("brightness", images, 2, torch.arange(images.shape[0]))
        assert out.shape == images.shape and out.dtype == images.dtype


def test_integer_images_are_refused_with_the_conversion_to_use():
    with pytest.raises(CorruptionInputError, match=r"uint8.*x\.float\(\) / 255"):
        apply_corruption("fog", (clean() * 255).to(torch.uint8), 1, torch.arange(2), check_input=False)


def test_the_error_is_exported():
    assert "CorruptionInputError" in corruptions.__all__ and issubclass(corruptions.CorruptionInputError, ValueError)


# ------------------------------------------------------------------------------------------ item 8: tiny images


@pytest.mark.parametrize("shape", TINY_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", list_corruptions())
def test_every_corruption_works_on_tiny_images(name, shape):
    """All severities: the raw function's output is finite (no NaN for apply_corruption to hide), the result is
    in [0, 1] with the right shape, and a mid-grey image does not come out black."""
    corruption = get_corruption(name)
    textured = torch.rand(shape, generator=torch.Generator().manual_seed(1)) * 0.6 + 0.2
    for severity in range(1, 6):
        seeds = derive_seeds(0, torch.arange(shape[0]), name, severity)
        for images in (textured, torch.full(shape, 0.5)):
            raw = corruption.fn(images.clone(), severity, seeds)
            assert raw.shape == images.shape, f"{name} s{severity}: shape {tuple(raw.shape)}"
            assert torch.isfinite(raw).all(), f"{name} s{severity}: {(~torch.isfinite(raw)).sum()} non-finite"
            out = apply_corruption(corruption, images, severity, seeds)
            assert out.shape == images.shape and out.dtype == images.dtype
            assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
            assert float(out.mean()) > 0.05, f"{name} s{severity}: degenerate (black) output on {shape}"


@pytest.mark.parametrize("severity", range(1, 6))
def test_fog_on_a_single_grey_pixel_is_fog_not_black(severity):
    """Fog keeps x·m/(m+t) at least (t <= 3): a 1x1 map had no range to normalise by and came out NaN -> black."""
    images = torch.full((8, 3, 1, 1), 0.5)
    out = apply_corruption("fog", images, severity, derive_seeds(0, torch.arange(8), "fog", severity))
    assert float(out.min()) >= 0.5 * 0.5 / 3.5 - 1e-6
    assert float(out.amax()) > float(out.amin())  # still random: the fog differs between images


@pytest.mark.parametrize("name, severities", [pytest.param("double_jpeg", range(1, 6), id="double_jpeg"),
                                              pytest.param("glass_blur", range(1, 6), id="glass_blur"),
                                              pytest.param("spatter", range(1, 4), id="spatter_water")])
@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (1, 3, 1, 7), (2, 3, 2, 3), (1, 3, 4, 4)],
                         ids=lambda s: "x".join(map(str, s)))
def test_tiny_flat_images_keep_their_colour(name, severities, shape):
    """The corruptions that used to raise on tiny sides: a flat colour stays (about) that colour, i.e. the image
    is processed, not replaced by padding or garbage."""
    colour = torch.tensor([0.8, 0.5, 0.2]).view(1, 3, 1, 1)
    images = colour.expand(shape).contiguous()
    for severity in severities:
        out = apply_corruption(name, images, severity, derive_seeds(0, torch.arange(shape[0]), name, severity))
        assert (out - images).abs().max() <= 0.05, f"{name} s{severity} on {shape}"


def test_double_jpeg_on_tiny_images_keeps_the_image_content():
    """The shift between the two saves must not replace a 2-row image by its last row (what padding after it
    would do): the top row stays closer to its own colour than to the bottom row's."""
    images = torch.tensor([[0.9, 0.9, 0.9], [0.1, 0.1, 0.1]]).expand(1, 3, 2, 3).contiguous()
    for severity in range(1, 6):
        out = apply_corruption("double_jpeg", images, severity, torch.arange(1))
        assert (out[..., 0, :] - 0.9).abs().max() < (out[..., 0, :] - 0.1).abs().min()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA"))])
@pytest.mark.parametrize("values, cleaned", [([float("nan"), 0.25], [0.0, 0.25]), ([-0.5, 0.25], [0.0, 0.25]),
                                             ([1.5, 0.25], [1.0, 0.25]), ([float("inf"), 0.25], [1.0, 0.25])])
def test_a_plugin_output_out_of_range_is_cleaned_and_an_in_range_one_kept(device, values, cleaned):
    """apply_corruption's safety net: NaN -> 0, below 0 -> 0, above 1 -> 1, in a new tensor of the input's
    dtype; an output already in [0, 1] comes back value for value."""
    from corruptions.registry import Corruption

    x = clean().to(device)
    unruly = Corruption("unruly", lambda im, s, seeds: with_value(im.double(), 0.0, 0).index_copy_(
        3, torch.arange(2, device=im.device), torch.tensor(values, device=im.device).double().expand(2, 3, 16, 2)))
    out = apply_corruption(unruly, x, 1, torch.arange(2))
    assert out.dtype == x.dtype
    assert out[:, :, :, :2].unique().tolist() == sorted(set(cleaned))
    assert torch.equal(out[:, :, :, 2:], x[:, :, :, 2:])
    tame = Corruption("tame", lambda im, s, seeds: im.flip(-1))
    kept = apply_corruption(tame, x, 1, torch.arange(2))
    assert torch.equal(kept, x.flip(-1)) and kept.data_ptr() != x.data_ptr()
