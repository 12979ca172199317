"""Every config composes through Hydra's compose API and builds the objects it describes, without running a model."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import compose_config
from omegaconf import OmegaConf

import corruptions
from robustbench_in.config import Config
from robustbench_in.data import DataSpec
from robustbench_in.evaluate import Runtime, SuiteSpec, build_cells
from robustbench_in.models import ModelSpec, get_zoo_entry, zoo_entries
from robustbench_in.report.alexnet import BENCHMARK_CORRUPTIONS, EXTRA_CORRUPTIONS
from robustbench_in.train import TrainSpec
from robustbench_in.train.augment import CorruptionAugmenter

CONF = Path(__file__).resolve().parents[1] / "conf"
YAML_OPTIONS = sorted((p.parent.name, p.stem) for p in CONF.glob("*/*.yaml"))
# keys a config leaves for the user to set (???), given so that it composes into objects
REQUIRED = {("model", "torchvision"): ["model.name=resnet18"], ("model", "timm"): ["model.name=resnet10t"],
            ("model", "checkpoint"): ["model.weights_file=/x.pt"],
            ("data", "imagenet_folder"): ["data.root=/data/val"],
            ("data", "imagenet_flat"): ["data.root=/data/val", "data.labels_file=/data/labels.txt"],
            ("data", "unlabelled"): ["data.root=/data/photos"]}


def test_every_group_of_the_schema_has_options():
    assert {g for g, _ in YAML_OPTIONS} == {"data", "model", "runtime", "suite", "train"}


@pytest.mark.parametrize("group, option", YAML_OPTIONS + [("model", name) for name in sorted(zoo_entries())])
def test_every_option_composes_into_objects(group, option):
    cfg = compose_config(f"{group}={option}", *REQUIRED.get((group, option), []))
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, Config)
    assert isinstance(obj.model, ModelSpec) and isinstance(obj.data, DataSpec)
    assert isinstance(obj.suite, SuiteSpec) and isinstance(obj.runtime, Runtime)
    assert isinstance(obj.train, TrainSpec) and obj.train.name == (option if group == "train" else "standard")
    CorruptionAugmenter(obj.train.augment)  # the training corruptions resolve too
    cells = build_cells(obj.suite)  # every corruption of the suite resolves (plug-ins included)
    assert cells and {c.severity for c in cells} <= {0, 1, 2, 3, 4, 5}
    if obj.model.source == "zoo":
        assert get_zoo_entry(obj.model.name).name == obj.model.name
    assert obj.runtime.torch_device.type in ("cpu", "cuda")


def test_defaults_are_the_offline_demo():
    obj = OmegaConf.to_object(compose_config())
    assert (obj.task, obj.model.name, obj.data.name, obj.suite.name) == ("eval", "efficientnet_lite0", "auto", "clean")


def test_bad_values_fail_when_the_objects_are_built():
    for override, message in (("runtime.batch_size=0", "runtime.batch_size=0 must be >= 1"),
                              ("suite.jpeg_quality=101", "suite.jpeg_quality=101"),
                              ("model.preprocessing.interpolation=cubic", "interpolation='cubic' is unknown")):
        with pytest.raises(Exception, match=message):
            OmegaConf.to_object(compose_config(override))


@pytest.mark.parametrize("suite, expected", [
    ("imagenet_c", BENCHMARK_CORRUPTIONS), ("imagenet_c_extra", EXTRA_CORRUPTIONS),
    ("imagenet_c_all", BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS), ("sensor", corruptions.SENSOR),
    ("all", BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS + corruptions.SENSOR),
    ("imagenet_c_bar", corruptions.IMAGENET_C_BAR),
    ("imagenet_c_all_bar", BENCHMARK_CORRUPTIONS + corruptions.IMAGENET_C_BAR),
])
def test_suite_lists_agree_with_the_registry(suite, expected):
    """The suites list their corruptions for readers; the registry is the source of truth, in its order."""
    listed = tuple(OmegaConf.to_object(compose_config(f"suite={suite}")).suite.corruptions)
    assert listed == tuple(expected)
    assert tuple(BENCHMARK_CORRUPTIONS) == corruptions.IMAGENET_C
    assert tuple(EXTRA_CORRUPTIONS) == corruptions.IMAGENET_C_EXTRA
