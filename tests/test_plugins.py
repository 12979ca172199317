"""The plug-in hook, each path tested for real: the decorator, entry points of an installed distribution,
``_target_`` entries of a suite config (in process and end to end through ``main.py``), and the
albumentations adapter. Plus the registry's errors: unknown names get the closest valid names, severities
outside 1-5 are refused."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

import corruptions
from corruptions import (
    Corruption,
    UnknownCorruptionError,
    apply_corruption,
    get_corruption,
    list_corruptions,
    load_entry_points,
    register_corruption,
    unregister_corruption,
)
from corruptions.adapters import MissingDependencyError, albumentations_corruption, severity_table, snake_case
from robustbench_in.evaluate.suite import SuiteSpec, build_cells

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
if str(REPO) not in sys.path:  # examples/ is importable from the repository root
    sys.path.insert(0, str(REPO))

from examples import my_corruptions  # noqa: E402

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def batch(n: int = 3, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(n * size))


@pytest.fixture
def registry_names():
    """Names a test registers; unregistered afterwards so no test leaks into another."""
    names: list[str] = []
    yield names
    for name in names:
        unregister_corruption(name)


def compose_suite(*overrides: str) -> SuiteSpec:
    from conftest import compose_config

    return OmegaConf.to_object(compose_config(*overrides).suite)


def suite_from(entries: list, severities=(1, 2)) -> SuiteSpec:
    return SuiteSpec(name="t", include_clean=False, corruptions=entries, severities=list(severities))


# ------------------------------------------------------------------------------------- 1. decorator


def test_decorator_registers_a_usable_corruption(registry_names):
    registry_names.append("test_plugin_invert")

    @register_corruption("test_plugin_invert", category="other", random=False, params={s: s / 5 for s in range(1, 6)})
    def invert(images, severity, seeds):
        """Blend toward the negative image."""
        return images + (1 - 2 * images) * severity / 5

    assert invert(torch.zeros(1, 3, 2, 2), 5, torch.zeros(1)).eq(1).all(), "the decorator returns the function"
    corruption = get_corruption("test_plugin_invert")
    assert corruption.fn is invert and corruption.category == "other" and not corruption.random
    assert corruption.description == "Blend toward the negative image." and corruption.params[5] == 1.0
    assert "test_plugin_invert" in list_corruptions("other")
    images = batch()
    assert torch.allclose(apply_corruption("test_plugin_invert", images, 5, torch.arange(3)), 1 - images, atol=1e-6)
    with pytest.raises(ValueError, match="already registered"):
        register_corruption("test_plugin_invert")(lambda images, severity, seeds: images)
    with pytest.raises(ValueError, match="identifier"):
        register_corruption("not a name")(invert)


def test_the_worked_example_module_registers_its_corruptions():
    vignette, cast = get_corruption("vignette"), get_corruption("color_cast")
    assert vignette.fn is my_corruptions.vignette and not vignette.random and vignette.category == "other"
    assert cast.fn is my_corruptions.color_cast and cast.random
    images = torch.full((1, 3, 33, 33), 0.5)
    out = vignette(images, 5, torch.zeros(1, dtype=torch.int64))
    assert out[0, :, 16, 16].eq(0.5).all() and torch.allclose(out[0, :, 0, 0], torch.full((3,), 0.125))


# ---------------------------------------------------------------------------------- 2. entry points

PLUGIN_MODULE = '''
"""A third-party plug-in, as an installed package would ship it."""
from corruptions import Corruption, register_corruption


def darken(images, severity, seeds):
    """Scale brightness down."""
    return images * (1 - 0.1 * severity)


posterize = Corruption(name="any_name", fn=lambda images, severity, seeds: (images * (8 - severity)).floor()
                       / (8 - severity), category="digital", random=False, description="Fewer grey levels.")
'''

REGISTERING_MODULE = '''
from corruptions import register_corruption


@register_corruption("ep_demo_registered", category="noise", random=False)
def lighten(images, severity, seeds):
    """Registers itself when the entry point imports the module."""
    return images + (1 - images) * 0.1 * severity
'''


def test_entry_points_of_an_installed_distribution_are_discovered(tmp_path, monkeypatch, registry_names):
    names = ["ep_demo_callable", "ep_demo_object", "ep_demo_registered"]
    registry_names.extend(names)
    for name in names:
        with pytest.raises(UnknownCorruptionError):
            get_corruption(name)
    (tmp_path / "rbin_ep_demo.py").write_text(PLUGIN_MODULE)
    (tmp_path / "rbin_ep_demo_registering.py").write_text(REGISTERING_MODULE)
    dist = tmp_path / "rbin_ep_demo-0.1.dist-info"  # what `pip install` leaves in site-packages
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rbin-ep-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(f"""\
        [{corruptions.ENTRY_POINT_GROUP}]
        ep_demo_callable = rbin_ep_demo:darken
        ep_demo_object = rbin_ep_demo:posterize
        ep_demo_module = rbin_ep_demo_registering
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        loaded = load_entry_points(force=True)
        assert {"ep_demo_callable", "ep_demo_object", "ep_demo_module"} <= set(loaded)
        darken = get_corruption("ep_demo_callable")  # a callable: registered under the entry point's name
        assert darken.fn.__module__ == "rbin_ep_demo" and darken.description.startswith("Scale brightness")
        assert torch.allclose(darken(torch.ones(1, 3, 4, 4), 2, torch.zeros(1)), torch.full((1, 3, 4, 4), 0.8))
        posterize = get_corruption("ep_demo_object")  # a Corruption: renamed to the entry point, metadata kept
        assert posterize.category == "digital" and not posterize.random
        assert get_corruption("ep_demo_registered").category == "noise"  # a module: registers on import
        assert "ep_demo_module" not in list_corruptions()
        cells = build_cells(suite_from(["ep_demo_callable", "ep_demo_registered"]))
        assert [(c.name, c.severity) for c in cells] == [("ep_demo_callable", 1), ("ep_demo_callable", 2),
                                                          ("ep_demo_registered", 1), ("ep_demo_registered", 2)]
    finally:
        for module in ("rbin_ep_demo", "rbin_ep_demo_registering"):
            sys.modules.pop(module, None)


# ------------------------------------------------------------------------------- 3. _target_ in a suite


def test_target_entries_of_the_example_suite_build_cells():
    cells = build_cells(compose_suite("suite=plugin_example", "suite.severities=[1,3]"))
    assert [(c.name, c.severity) for c in cells] == [
        ("clean", 0), ("brightness", 1), ("brightness", 3), ("vignette", 1), ("vignette", 3),
        ("color_cast", 1), ("color_cast", 3)]
    by_name = {c.name: c.corruption for c in cells if c.corruption is not None}
    assert by_name["vignette"].fn is my_corruptions.vignette and not by_name["vignette"].random
    assert by_name["color_cast"].fn is my_corruptions.color_cast and by_name["color_cast"].random
    assert by_name["vignette"].category == "other"


def test_target_needs_no_registration(tmp_path, monkeypatch):
    (tmp_path / "rbin_target_demo.py").write_text(
        "def quantize(images, severity, seeds):\n"
        "    '''Uniform quantisation to fewer levels.'''\n"
        "    levels = 2 ** (6 - severity)\n"
        "    return (images * levels).round() / levels\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        cells = build_cells(suite_from([{"_target_": "rbin_target_demo.quantize", "category": "digital",
                                         "random": False}], severities=[5]))
        (cell,) = cells
        assert cell.name == "quantize" and cell.category == "digital" and not cell.corruption.random
        assert "quantize" not in list_corruptions()
        out = apply_corruption(cell.corruption, batch(), 5, torch.arange(3))
        assert set(out.unique().tolist()) <= {0.0, 0.5, 1.0}
    finally:
        sys.modules.pop("rbin_target_demo", None)


def test_plugin_suite_end_to_end(tmp_path):
    """The CLI runs a suite of _target_ plug-ins and writes their rows next to clean and built-in ones."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "model=tiny_cnn", "suite=plugin_example", "suite.severities=[1,2]",
         f"results_dir={tmp_path}", "runtime.workers=0", "runtime.progress=false"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = pd.read_csv(tmp_path / "results.csv")
    cells = set(zip(rows["corruption"], rows["severity"]))
    assert cells == {("clean", 0), ("brightness", 1), ("brightness", 2), ("vignette", 1), ("vignette", 2),
                     ("color_cast", 1), ("color_cast", 2)}
    plugin_rows = rows[rows["corruption"].isin(["vignette", "color_cast"])]
    assert (plugin_rows["category"] == "other").all() and (plugin_rows["n"] == rows["n"].max()).all()
    assert rows["n"].max() > 0


# --------------------------------------------------------------------------------- registry errors


def test_unknown_corruption_names_the_closest_valid_ones():
    with pytest.raises(UnknownCorruptionError, match="gaussian_noise"):
        get_corruption("gausian_noise")
    with pytest.raises(UnknownCorruptionError, match="fog"):
        build_cells(suite_from(["fgo"]))
    with pytest.raises(UnknownCorruptionError, match="valid names: .*brightness"):
        get_corruption("qqqqqqqqqqqq")


@pytest.mark.parametrize("severity", [0, 6, -1, 2.5, True, "3"])
def test_severity_outside_1_to_5_is_refused(severity):
    with pytest.raises(ValueError, match="severity must be an integer 1-5"):
        apply_corruption("brightness", batch(), severity, torch.arange(3))


def test_suite_severity_outside_1_to_5_is_refused():
    with pytest.raises(ValueError, match="severity must be an integer 1-5"):
        build_cells(suite_from(["fog"], severities=[1, 6]))


# --------------------------------------------------------------------------- albumentations adapter

ISO_NOISE_TABLE = {s: {"color_shift": [0.01 * s, 0.01 * s + 0.01], "intensity": [0.2 * s, 0.2 * s + 0.1]}
                   for s in range(1, 6)}


@pytest.fixture(scope="module")
def albumentations():
    try:
        return importlib.import_module("albumentations")
    except ImportError:
        pytest.skip("albumentations is not installed (optional: pip install 'albumentations<2.1')")


@pytest.fixture(scope="module")
def iso_noise(albumentations) -> Corruption:
    return albumentations_corruption("iso_noise", "ISONoise", ISO_NOISE_TABLE)


def test_albumentations_adapter_is_deterministic_per_image_seed(iso_noise):
    images, seeds = batch(4, 48), torch.tensor([5, 6, 7, 8])
    out = iso_noise(images, 3, seeds)
    assert iso_noise.runs_on == "cpu" and iso_noise.random and iso_noise.category == "other"
    assert out.shape == images.shape and out.dtype == images.dtype and not torch.equal(out, images)
    assert torch.equal(iso_noise(images, 3, seeds), out)
    singles = torch.cat([iso_noise(images[i:i + 1], 3, seeds[i:i + 1]) for i in range(4)])
    assert torch.equal(singles, out), "an image's result depends on its batch"
    order = torch.tensor([2, 0, 3, 1])
    assert torch.equal(iso_noise(images[order], 3, seeds[order]), out[order])
    other = iso_noise(images, 3, seeds + 100)
    assert all(not torch.equal(other[i], out[i]) for i in range(4))


def test_albumentations_severity_changes_the_output(iso_noise):
    images, seeds = batch(2, 48), torch.tensor([1, 2])
    change = [float((iso_noise(images, s, seeds) - images).abs().mean()) for s in (1, 3, 5)]
    assert change[0] < change[1] < change[2]


def test_albumentations_params_from_hydra_are_accepted(albumentations):
    """Hydra passes the table as a DictConfig with int keys and ListConfig ranges."""
    table = OmegaConf.create({s: {"quality_range": [60 - 10 * s, 60 - 10 * s]} for s in range(1, 6)})
    jpeg = albumentations_corruption(transform="ImageCompression", severity_params=table, random=False)
    assert jpeg.name == "image_compression" and jpeg.params[2] == {"transform": "ImageCompression",
                                                                   "quality_range": (40, 40)}
    images = batch(2, 32)
    assert torch.equal(jpeg(images, 4, torch.tensor([1, 2])), jpeg(images, 4, torch.tensor([3, 4])))


def test_albumentations_example_suite_builds_cells(albumentations):
    cells = build_cells(compose_suite("suite=albumentations_example", "suite.severities=[2,5]"))
    assert [(c.name, c.severity) for c in cells][1:] == [
        ("iso_noise", 2), ("iso_noise", 5), ("random_fog", 2), ("random_fog", 5),
        ("image_compression", 2), ("image_compression", 5)]
    corruptions_ = {c.name: c.corruption for c in cells[1:]}
    assert all(c.runs_on == "cpu" and c.category == "other" for c in corruptions_.values())
    out = apply_corruption(corruptions_["random_fog"], batch(2, 64), 5, torch.tensor([1, 2]))
    assert out.shape == (2, 3, 64, 64)


def test_suite_entry_metadata_overrides_the_factory_defaults(albumentations):
    """name/category/random in a suite entry win over what the factory picked (app._plugin_corruption)."""
    entry = {"_target_": "corruptions.adapters.albumentations_corruption", "name": "my_jpeg", "category": "digital",
             "random": False, "transform": "ImageCompression",
             "severity_params": {s: {"quality_range": [50 - 8 * s, 50 - 8 * s]} for s in range(1, 6)}}
    (cell,) = build_cells(suite_from([entry], severities=[3]))
    assert (cell.name, cell.category, cell.corruption.name) == ("my_jpeg", "digital", "my_jpeg")
    assert cell.corruption.random is False and cell.corruption.runs_on == "cpu"


def test_a_bad_factory_entry_reports_the_factorys_own_error(albumentations):
    """A typo in a suite's adapter entry surfaces as the adapter's one-line ValueError, not Hydra's wrapper."""
    entry = {"_target_": "corruptions.adapters.albumentations_corruption", "transform": "ISONoize",
             "severity_params": ISO_NOISE_TABLE}
    with pytest.raises(ValueError, match="did you mean ISONoise"):
        build_cells(suite_from([entry]))


def test_albumentations_bad_tables_fail_clearly(albumentations):
    with pytest.raises(ValueError, match="severities 1-5"):
        albumentations_corruption("x", "ISONoise", {1: {}, 2: {}})
    with pytest.raises(ValueError, match="did you mean ISONoise"):
        albumentations_corruption("x", "ISONoize", ISO_NOISE_TABLE)
    with pytest.raises(ValueError, match="ISONoise: bad severity_params"):
        albumentations_corruption("x", "ISONoise", {s: {"intensty": [0.1, 0.2]} for s in range(1, 6)})
    with pytest.raises(ValueError, match="p must be 1"):
        severity_table({s: {"p": 0.5} for s in range(1, 6)})
    assert list(severity_table([{}] * 5)) == [1, 2, 3, 4, 5]  # a list of five dicts
    assert list(severity_table({"5": {}, "1": {}, 2: {}, 3: {}, 4: {}})) == [1, 2, 3, 4, 5]  # string keys, any order


def test_albumentations_yaml_registration(albumentations, registry_names):
    from corruptions.adapters import register_albumentations_from_yaml

    names = register_albumentations_from_yaml(CONF_DIR / "suite" / "albumentations_example.yaml")
    registry_names.extend(names)
    assert names == ["iso_noise", "random_fog", "image_compression"]
    assert not get_corruption("image_compression").random and get_corruption("iso_noise").random
    cells = build_cells(suite_from(["iso_noise", "image_compression"], severities=[1]))
    assert [c.name for c in cells] == ["iso_noise", "image_compression"]


def test_missing_albumentations_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "albumentations", None)  # import albumentations -> ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'albumentations<2.1'") as info:
        albumentations_corruption("iso_noise", "ISONoise", ISO_NOISE_TABLE)
    assert "\n" not in str(info.value)


def test_default_names_are_snake_case():
    assert [snake_case(n) for n in ("ISONoise", "RandomFog", "ImageCompression", "GaussNoise")] == [
        "iso_noise", "random_fog", "image_compression", "gauss_noise"]
