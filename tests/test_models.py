"""Models: sources with offline weights, hub/cache loading with locally made weight files, the zoo, checkpoints,
and clear one-line errors."""

from __future__ import annotations

import pytest
import torch

from robustbench_in.data import Preprocessing, imagenet_classes
from robustbench_in.models import (
    ModelError,
    ModelSpec,
    create_model,
    read_checkpoint,
    save_checkpoint,
    zoo_entries,
)
from robustbench_in.models.checkpoint import check_class_table


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# the zoo entries whose weights ship with the project's dependencies (the rest need a cache: random init here)
OFFLINE = {"efficientnet_lite0", "efficientnet_lite0_256", "efficientnet_lite1", "efficientnet_lite2", "tiny_cnn"}


@pytest.mark.parametrize("name", sorted(zoo_entries()))
def test_every_zoo_entry_builds_and_classifies(name):
    """Each entry builds (with its real weights where they are offline), in eval mode, with a complete
    preprocessing, and maps a batch at its own input size to 1000 logits."""
    entry = create_model(ModelSpec(name=name, random_init=name not in OFFLINE))
    pre = entry.preprocessing
    assert not entry.module.training and pre.complete and entry.name == name
    assert entry.architecture[0] in ("timm", "torchvision", "local") and entry.architecture[1]
    x = pre.normalize(torch.rand(2, 3, pre.input_size, pre.input_size))
    with torch.inference_mode():
        logits = entry.module(x)
    assert logits.shape == (2, 1000) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name, size, resize", [("efficientnet_lite0", 224, 256), ("efficientnet_lite1", 240, 272),
                                                ("efficientnet_lite2", 260, 292)])
def test_efficientnet_lite_weights_and_native_preprocessing(name, size, resize):
    entry = create_model(ModelSpec(name=name))
    assert (entry.preprocessing.input_size, entry.preprocessing.resize_size) == (size, resize)
    assert entry.preprocessing.mean == (0.5, 0.5, 0.5) and entry.preprocessing.std == (0.5, 0.5, 0.5)
    assert entry.weights.endswith(".pth") and entry.architecture == ("timm", f"tf_efficientnet_lite{name[-1]}")
    random = create_model(ModelSpec(name=name, random_init=True))
    assert not _same_weights(entry.module, random.module)


def test_random_init_is_reproducible_and_only_on_request():
    a = create_model(ModelSpec(name="tiny_cnn"))
    b = create_model(ModelSpec(name="tiny_cnn"))
    assert _same_weights(a.module, b.module)
    with pytest.raises(ModelError, match="random_init=true"):
        create_model(ModelSpec(source="local", name="tiny_cnn"))


def test_preprocessing_overrides_apply_over_the_entry():
    entry = create_model(ModelSpec(name="efficientnet_lite0",
                                   preprocessing=Preprocessing(input_size=256, resize_size=292)))
    assert (entry.preprocessing.input_size, entry.preprocessing.resize_size) == (256, 292)
    assert entry.preprocessing.mean == (0.5, 0.5, 0.5)  # untouched fields keep the entry's values
    with pytest.raises(ValueError, match="must not exceed resize_size"):
        create_model(ModelSpec(name="efficientnet_lite0", preprocessing=Preprocessing(input_size=300)))


def test_torchvision_weights_from_local_hub_cache(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    spec = ModelSpec(source="torchvision", name="resnet18", weights="IMAGENET1K_V1")
    with pytest.raises(ModelError, match=r"not found at .*resnet18-f37072fd\.pth"):
        create_model(spec)
    reference = torchvision.models.resnet18()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    entry = create_model(spec)
    assert _same_weights(entry.module, reference)
    assert (entry.preprocessing.resize_size, entry.preprocessing.input_size) == (256, 224)


def test_zoo_entry_of_torchvision_uses_the_hub_cache(tmp_path, monkeypatch):
    """``model=resnet50`` is torchvision's resnet50 with IMAGENET1K_V2 weights, from the local cache."""
    import torchvision

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    with pytest.raises(ModelError, match=r"resnet50/IMAGENET1K_V2 not found at .*resnet50-11ad3fa6\.pth"):
        create_model(ModelSpec(name="resnet50"))
    reference = torchvision.models.resnet50()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), tmp_path / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth")
    entry = create_model(ModelSpec(name="resnet50"))
    assert _same_weights(entry.module, reference) and entry.name == "resnet50"
    assert entry.preprocessing.resize_size == 232  # V2 weights: resize 232, crop 224, bilinear


def test_torchvision_explicit_file_and_bad_weight_name(tmp_path):
    import torchvision

    reference = torchvision.models.mobilenet_v3_small()
    path = tmp_path / "w.pth"
    torch.save({"state_dict": reference.state_dict()}, path)
    entry = create_model(ModelSpec(source="torchvision", name="mobilenet_v3_small", weights_file=str(path)))
    assert _same_weights(entry.module, reference)
    with pytest.raises(ModelError, match="is not a weight of"):
        create_model(ModelSpec(source="torchvision", name="mobilenet_v3_small", weights="NOPE"))


def test_timm_weights_from_local_hf_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants
    import timm
    from safetensors.torch import save_file

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    spec = ModelSpec(source="timm", name="resnet10t.c3_in1k")
    with pytest.raises(ModelError, match="not found in the Hugging Face cache"):
        create_model(spec)
    reference = timm.create_model("resnet10t.c3_in1k", pretrained=False)
    repo = tmp_path / "models--timm--resnet10t.c3_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()},
              str(repo / "snapshots" / "abc123" / "model.safetensors"))
    entry = create_model(spec)
    assert _same_weights(entry.module, reference)
    assert entry.preprocessing.input_size == reference.pretrained_cfg["input_size"][-1]


def test_unknown_names_are_errors_with_close_matches():
    with pytest.raises(ModelError, match="did you mean resnet50"):
        create_model(ModelSpec(source="torchvision", name="resnet5O"))
    with pytest.raises(ModelError, match="unknown model source 'torchvison'.*did you mean torchvision"):
        create_model(ModelSpec(source="torchvison", name="x"))
    with pytest.raises(ModelError, match="unknown model 'efficientnet_lite9'.*did you mean"):
        create_model(ModelSpec(name="efficientnet_lite9"))


def test_checkpoint_round_trip_keeps_weights_preprocessing_and_classes(tmp_path):
    entry = create_model(ModelSpec(name="efficientnet_lite0", random_init=True,
                                   preprocessing=Preprocessing(input_size=192, resize_size=220)))
    path = save_checkpoint(tmp_path / "ckpt.pt", entry, metrics={"top1_err": 0.5})
    loaded = create_model(ModelSpec(source="checkpoint", name="checkpoint", weights_file=str(path)))
    assert _same_weights(entry.module, loaded.module)
    assert loaded.preprocessing == entry.preprocessing and loaded.wnids == imagenet_classes().wnids
    assert loaded.source == "checkpoint" and loaded.name == "efficientnet_lite0+ckpt"  # never its starting name
    assert read_checkpoint(path)["metrics"] == {"top1_err": 0.5}


def test_foreign_or_broken_checkpoints_are_one_line_errors(tmp_path):
    cases = {"other.pt": lambda p: torch.save({"x": torch.zeros(1)}, p),
             "torn.pt": lambda p: p.write_bytes(b"PK\x03\x04 not really a zip"),
             "text.pt": lambda p: p.write_text("hello"),
             "tensor.pt": lambda p: torch.save(torch.zeros(3), p)}
    for name, write in cases.items():
        write(tmp_path / name)
        with pytest.raises(ModelError) as info:
            create_model(ModelSpec(source="checkpoint", name="checkpoint", weights_file=str(tmp_path / name)))
        assert "\n" not in str(info.value) and name in str(info.value), str(info.value)
        assert "not a robustbench_in checkpoint" in str(info.value) or "not a readable checkpoint" in str(info.value)


def test_class_table_must_fit_the_outputs():
    wnids = imagenet_classes().wnids
    assert check_class_table(wnids[:10], 10, "m") == wnids[:10]
    with pytest.raises(ModelError, match="10 outputs but 5 wnids"):
        check_class_table(wnids[:5], 10, "m")
    with pytest.raises(ModelError, match="repeats wnids"):
        check_class_table([wnids[0]] * 10, 10, "m")
    with pytest.raises(ModelError, match="non-ImageNet wnids"):
        check_class_table(["n00000000", *wnids[1:10]], 10, "m")


def test_a_class_count_other_than_the_class_table_is_refused_before_any_work():
    with pytest.raises(ModelError, match="tiny_cnn has 10 outputs but its class table names 1000"):
        create_model(ModelSpec(name="tiny_cnn", num_classes=10))


def test_normalize_is_mean_std_standardisation_in_the_input_layout():
    pre = Preprocessing(input_size=8, resize_size=8, interpolation="bilinear", mean=(0.485, 0.456, 0.406),
                        std=(0.229, 0.224, 0.225))
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    expected = (x - torch.tensor(pre.mean, dtype=torch.float64).view(1, 3, 1, 1)) / torch.tensor(
        pre.std, dtype=torch.float64).view(1, 3, 1, 1)
    torch.testing.assert_close(pre.normalize(x), expected, rtol=0, atol=1e-12)
    last = pre.normalize(x.float().contiguous(memory_format=torch.channels_last))
    assert last.dtype == torch.float32 and last.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(last, expected.float(), rtol=0, atol=1e-6)
