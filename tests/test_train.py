"""Training: the loss goes down, checkpoints evaluate in sweeps, a killed run resumes to the same weights,
two gloo processes end with identical weights, augmenters are seeded and batched, bad checkpoints are one line."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from robustbench_in.data import DataSpec, imagenet_classes
from robustbench_in.evaluate import Runtime
from robustbench_in.models import ModelSpec, create_model, read_checkpoint
from robustbench_in.train import AugMixSpec, CorruptionAugSpec, DistillSpec, TrainSpec
from robustbench_in.train.augment import AugMix, CorruptionAugmenter, distillation, jensen_shannon
from robustbench_in.train.data import epoch_indices, random_resized_crop_box, split_dataset, train_loader
from robustbench_in.train.trainer import Trainer, lr_factor

REPO = Path(__file__).resolve().parents[1]
CLASSES = 4


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A learnable toy ImageNet folder: 4 classes x 8 images, each class its own colour and stripe."""
    root = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(0)
    for c in range(CLASSES):
        wnid = imagenet_classes().wnids[c * 7]
        (root / wnid).mkdir()
        for i in range(8):
            img = np.zeros((48, 64, 3), np.float64)
            img[..., c % 3] = 0.8
            img[:, (c * 13) % 64: (c * 13) % 64 + 10] = 1.0
            img += 0.1 * rng.standard_normal(img.shape)
            Image.fromarray((img.clip(0, 1) * 255).astype(np.uint8)).save(root / wnid / f"{i}.png")
    return root


def _spec(**kw) -> TrainSpec:
    base = dict(epochs=2, batch_size=8, lr=0.05, warmup_epochs=0.0, label_smoothing=0.0, val_fraction=0.25,
                weight_decay=0.0, crop_scale=[0.5, 1.0])
    return TrainSpec(**{**base, **kw})


def _trainer(folder, tmp_path, spec: TrainSpec, seed: int = 3, **model) -> Trainer:
    runtime = Runtime(device="cpu", workers=0, progress=False, seed=seed)
    return Trainer(ModelSpec(name="tiny_cnn", **model), DataSpec(name="imagenet_folder", root=str(folder)), spec,
                   runtime, tmp_path, config={"train": {"lr": spec.lr}}, log=lambda _m: None)


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_few_steps_on_a_repeated_batch_lower_the_loss(folder, tmp_path):
    trainer = _trainer(folder, tmp_path, _spec(epochs=20))  # a schedule longer than the 25 steps below
    batch = next(iter(train_loader(trainer.crops, list(range(8)), 8, 0, pin=False)))
    losses = [trainer.train_step(batch) for _ in range(25)]
    assert losses[-1] < 0.5 * losses[0], losses


def test_lr_schedule_warms_up_then_follows_the_cosine():
    assert lr_factor(0, 100, 10, 0.0) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, 0.0) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, 0.0) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, 0.1) == pytest.approx(0.1)


def test_data_order_and_crops_are_pure_functions_of_seed_epoch_index():
    a, b = epoch_indices(10, 0, 1), epoch_indices(10, 0, 1)
    assert a == b and sorted(a) == list(range(10)) and a != epoch_indices(10, 0, 2)
    ranks = [epoch_indices(9, 0, 1, r, 2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 5 and set(ranks[0]) | set(ranks[1]) == set(range(9))
    box = random_resized_crop_box(np.random.default_rng([0, 1, 2]), 500, 375, (0.08, 1.0))
    assert box == random_resized_crop_box(np.random.default_rng([0, 1, 2]), 500, 375, (0.08, 1.0))
    left, top, w, h = box
    assert 0 <= left and left + w <= 500 and 0 <= top and top + h <= 375


def test_held_out_split_is_deterministic_and_disjoint(folder):
    from robustbench_in.data import build_dataset

    images = build_dataset(DataSpec(name="imagenet_folder", root=str(folder)))
    one, two = split_dataset(images, 0.25, None), split_dataset(images, 0.25, None)
    assert [i.key for i in one.val.items] == [i.key for i in two.val.items]
    assert not {i.key for i in one.train.items} & {i.key for i in one.val.items}
    assert len(one.train.items) + len(one.val.items) == 32 and 2 <= len(one.val.items) <= 16


def test_corruption_augmenter_is_seeded_per_step_and_respects_p():
    x = torch.rand(16, 3, 32, 32)
    ids = torch.arange(16)
    aug = CorruptionAugmenter(CorruptionAugSpec(p=1.0, corruptions=["gaussian_noise", "contrast"], severities=[5]))
    out = aug(x, ids, seed=7)
    assert torch.equal(out, aug(x, ids, seed=7)) and not torch.equal(out, aug(x, ids, seed=8))
    assert ((out - x).abs().flatten(1).amax(1) > 0.05).all()  # every image corrupted at p=1
    assert torch.equal(CorruptionAugmenter(CorruptionAugSpec(p=0.0))(x, ids, seed=7), x)
    some = CorruptionAugmenter(CorruptionAugSpec(p=0.5, categories=["noise"]))(x, ids, seed=7)
    changed = (some - x).abs().flatten(1).amax(1) > 0
    assert 0 < int(changed.sum()) < 16
    with pytest.raises(ValueError, match="no corruptions"):
        CorruptionAugmenter(CorruptionAugSpec(p=0.5))


def test_augmix_view_is_seeded_in_range_and_different():
    x = torch.rand(6, 3, 40, 40)
    augmix = AugMix(AugMixSpec(enabled=True))
    a = augmix(x, 11)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, augmix(x, 11)) and not torch.equal(a, augmix(x, 12))
    assert not torch.allclose(a, x)


def test_consistency_losses_vanish_when_the_views_agree():
    logits = torch.randn(5, 10)
    assert float(jensen_shannon([logits, logits, logits])) == pytest.approx(0.0, abs=1e-6)
    assert float(jensen_shannon([logits, -logits, logits])) > 0.01
    assert float(distillation(logits, logits, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distillation(logits, logits.flip(1), 1.0)) > 0.01


def test_fit_writes_curve_and_checkpoints_that_evaluate(folder, tmp_path):
    spec = _spec(epochs=2, augment=CorruptionAugSpec(p=0.5, corruptions=["gaussian_noise"]),
                 augmix=AugMixSpec(enabled=True), distill=DistillSpec(weight=1.0))
    trainer = _trainer(folder, tmp_path, spec, label="toy")
    last = trainer.fit()
    curve = pd.read_csv(tmp_path / "curve.csv")
    assert list(curve["epoch"]) == [1, 2] and curve["train_loss"].notna().all()
    assert curve["n_val"].iloc[0] > 0 and (tmp_path / "curve.png").stat().st_size > 5000
    ckpt = read_checkpoint(last)
    assert ckpt["train"]["config"] == {"train": {"lr": 0.05}} and ckpt["metrics"]["epoch"] == 2
    assert "versions" in ckpt and ckpt["train"]["recipe_hash"]
    loaded = create_model(ModelSpec(source="checkpoint", name="checkpoint", weights_file=str(last)))
    assert _same_weights(loaded.module.state_dict(), trainer.entry.module.state_dict())
    assert loaded.name == "toy+last" and loaded.preprocessing == trainer.entry.preprocessing


def main_py(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "main.py"), *args], capture_output=True, text=True,
                          timeout=600, **kw)


def _train_args(folder: Path, out: Path, *extra: str) -> list[str]:
    return [str(REPO / "main.py"), "task=train", "model=tiny_cnn", f"data.root={folder}", "train.epochs=5",
            "train.batch_size=8", "train.lr=0.05", "train.warmup_epochs=0.5", "train.checkpoint_every_steps=3",
            "train.augment.p=0.5", "train.augment.corruptions=[gaussian_noise,fog]", "runtime.workers=0",
            "runtime.progress=false", f"results_dir={out}", *extra]


def test_sigkill_then_resume_gives_the_weights_of_an_uninterrupted_run(folder, tmp_path):
    ref = subprocess.run([sys.executable, *_train_args(folder, tmp_path / "ref")], capture_output=True, text=True,
                         timeout=600)
    assert ref.returncode == 0, ref.stderr[-2000:]
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, *_train_args(folder, out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (out / "checkpoints" / "last.pt").exists():
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = read_checkpoint(out / "checkpoints" / "last.pt")["train"]["state"]["global_step"]
    assert killed_at < 15  # 5 epochs x 3 steps: it stopped part way
    resumed = subprocess.run([sys.executable, *_train_args(folder, out, "train.resume=true")], capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resume:" in resumed.stdout
    a, b = (read_checkpoint(d / "checkpoints" / "last.pt") for d in (tmp_path / "ref", out))
    assert _same_weights(a["state_dict"], b["state_dict"])
    assert a["train"]["state"]["curve"][-1]["train_loss"] == b["train"]["state"]["curve"][-1]["train_loss"]


def test_resume_refuses_another_recipe_and_foreign_files_in_one_line(folder, tmp_path):
    out = tmp_path / "run"
    first = main_py(*_train_args(folder, out, "train.epochs=1")[1:])
    assert first.returncode == 0, first.stderr[-2000:]
    other = main_py(*_train_args(folder, out, "train.epochs=1", "train.lr=0.5", "train.resume=true")[1:])
    lines = [line for line in other.stderr.splitlines() if line.strip()]
    assert other.returncode == 2 and len(lines) == 1 and "another model/data/train config" in lines[0], other.stderr
    (out / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    broken = main_py(*_train_args(folder, out, "train.epochs=1", "train.resume=true")[1:])
    lines = [line for line in broken.stderr.splitlines() if line.strip()]
    assert broken.returncode == 2 and len(lines) == 1 and "not a readable checkpoint" in lines[0], broken.stderr


def test_checkpoint_evaluates_in_a_sweep_next_to_a_pretrained_model(folder, tmp_path):
    train = main_py(*_train_args(folder, tmp_path / "run", "train.epochs=1")[1:])
    assert train.returncode == 0, train.stderr[-2000:]
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    sweep = main_py("-m", "model=checkpoint,tiny_cnn", f"model.weights_file={last}", f"data.root={folder}",
                    "suite.corruptions=[contrast]", "suite.severities=[3]", "runtime.workers=0",
                    f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    rows = pd.concat(pd.read_csv(f) for f in (tmp_path / "sweep").rglob("results.csv"))
    assert sorted(set(rows["model"])) == ["tiny_cnn", "tiny_cnn+standard"]  # never mixed up in a report
    trained = rows[rows["model"] == "tiny_cnn+standard"]
    assert len(trained) == 2 and (trained["n"] == 32).all() and (trained["weights"] == "last.pt").all()


def test_two_gloo_processes_end_with_identical_weights(folder, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           *_train_args(folder, out, "train.epochs=2", "runtime.device=cpu")],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "all 2 ranks hold identical weights" in proc.stdout
    assert proc.stdout.count("epoch 2/2") == 1  # rank 0 alone logs
    ckpt = read_checkpoint(out / "checkpoints" / "last.pt")
    assert ckpt["train"]["world_size"] == 2 and ckpt["metrics"]["n_val"] > 0
    assert not math.isnan(ckpt["metrics"]["val_top1_err"])


def test_two_checkpoints_with_one_file_name_are_two_models_to_the_results_store(folder, tmp_path):
    """Every run writes last.pt: the cell id hashes the weights, so the second is evaluated, not 'resumed'."""
    from conftest import compose_config

    from robustbench_in.tasks import task_eval

    results = tmp_path / "results"
    for seed in (1, 2):
        last = _trainer(folder, tmp_path / f"run{seed}", _spec(epochs=1), seed=seed).fit()
        task_eval(compose_config("model=checkpoint", f"model.weights_file={last}", f"data.root={folder}",
                                 f"results_dir={results}", "runtime.workers=0", "runtime.progress=false"))
    rows = pd.read_csv(results / "results.csv")
    assert len(rows) == 2 and rows["cell_id"].nunique() == 2
