"""Model registry: offline weights, hub/cache loading with locally made weight files, clear errors."""

from __future__ import annotations

import pytest
import torch

from robustbench_in.models import ModelError, ModelSpec, create_model, save_checkpoint


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_efficientnet_lite0_loads_real_weights_with_its_preprocessing():
    entry = create_model(ModelSpec(source="efficientnet_lite0"))
    assert not entry.module.training
    assert entry.preprocessing.mean == (0.5, 0.5, 0.5) and entry.preprocessing.input_size == 224
    random = create_model(ModelSpec(source="efficientnet_lite0", random_init=True))
    assert not _same_weights(entry.module, random.module)


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


def test_unknown_names_and_implicit_random_init_are_errors():
    with pytest.raises(ModelError, match="did you mean resnet50"):
        create_model(ModelSpec(source="torchvision", name="resnet5O"))
    with pytest.raises(ModelError, match="unknown model source"):
        create_model(ModelSpec(source="torchvison"))
    with pytest.raises(ModelError, match="random_init=true"):
        create_model(ModelSpec(source="tiny_cnn"))


def test_checkpoint_round_trip(tmp_path):
    spec = ModelSpec(source="tiny_cnn", name="tiny_cnn", random_init=True)
    entry = create_model(spec)
    path = save_checkpoint(tmp_path / "ckpt.pt", entry, spec)
    loaded = create_model(ModelSpec(source="checkpoint", weights_file=str(path)))
    assert _same_weights(entry.module, loaded.module)
    assert loaded.preprocessing == entry.preprocessing
    with pytest.raises(ModelError, match="not a robustbench_in checkpoint"):
        torch.save({"x": torch.zeros(1)}, tmp_path / "other.pt")
        create_model(ModelSpec(source="checkpoint", weights_file=str(tmp_path / "other.pt")))
