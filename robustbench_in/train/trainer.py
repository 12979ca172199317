"""Training and fine-tuning: any zoo entry, torchvision or timm architecture, from its weights or from scratch.

One :class:`Trainer` holds the run: the model (and, for self-distillation, a frozen copy of where it started),
the optimiser and its warm-up + cosine schedule, the data split and the augmenters. :meth:`Trainer.fit` runs
the epochs: each step corrupts / AugMixes the batch on the device, normalises it, classifies it and steps; each
epoch ends with the held-out clean error, the curve and an atomic checkpoint that ``model=checkpoint`` evaluates
and ``train.resume=true`` continues exactly (same step, optimiser, schedule, data position and RNG state).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_in.data.classes import imagenet_classes
from robustbench_in.data.datasets import DataSpec, build_dataset
from robustbench_in.data.loader import make_loader
from robustbench_in.evaluate.engine import Scorer, batch_records
from robustbench_in.evaluate.runtime import Runtime
from robustbench_in.evaluate.suite import CLEAN_CELL
from robustbench_in.models.registry import ModelEntry, ModelSpec, create_model
from robustbench_in.report.metrics import nll
from robustbench_in.train import checkpoints
from robustbench_in.train.augment import AugMix, CorruptionAugmenter, distillation, jensen_shannon, step_seed
from robustbench_in.train.curve import write_curve
from robustbench_in.train.data import TrainCrops, epoch_indices, split_dataset, steps_per_epoch, train_loader
from robustbench_in.train.distributed import barrier, init_world, sum_across, sync_buffers, weights_agree
from robustbench_in.train.spec import TrainSpec


@dataclass
class TrainState:
    """Where a run stands: enough, with the model/optimiser/schedule state, to continue it exactly."""

    epoch: int = 0  # the epoch in progress (or the next one, when step_in_epoch == 0)
    step_in_epoch: int = 0
    global_step: int = 0
    loss_sum: float = 0.0  # of the epoch in progress, for its mean loss
    loss_count: float = 0.0
    best_top1_err: float = math.inf
    curve: list[dict] = field(default_factory=list)


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine decay to ``min_ratio`` at ``total`` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(module: nn.Module, spec: TrainSpec) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW, with weight decay on weights only (not on biases and normalisation parameters)."""
    params = [p for p in module.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if spec.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=spec.lr)
    return torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov and spec.momentum > 0)


def set_train_mode(module: nn.Module, freeze_bn: bool) -> None:
    module.train()
    if freeze_bn:
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


class Trainer:
    def __init__(self, model_spec: ModelSpec, data_spec: DataSpec, spec: TrainSpec, runtime: Runtime, run_dir: Path,
                 config: dict, log: Callable[[str], None] = print):
        self.spec, self.runtime, self.run_dir, self.config = spec, runtime, Path(run_dir), config
        self.world, self.device = init_world(runtime.torch_device)
        torch.manual_seed(runtime.seed * 1_000_003 + self.world.rank)  # dropout / drop-path: reproducible per rank
        # channels_last unless turned off: on CPU it makes a training step ~1.45x faster (EfficientNet-Lite0,
        # batch 32: 2.3 s instead of 3.4 s on 2 cores), on GPU it is what tensor cores want
        self.channels_last = runtime.channels_last is not False
        self.log = log if self.world.is_main else (lambda _msg: None)
        val_spec = DataSpec(name="imagenet_folder", root=spec.val_root) if spec.val_root else None
        self.split = split_dataset(build_dataset(data_spec), spec.val_fraction, val_spec)
        self.entry = create_model(model_spec)
        self._setup_model(self.entry)
        self.optimizer = build_optimizer(self.entry.module, spec)
        self.steps = steps_per_epoch(len(self.split.train.items), spec.batch_size, self.world.size,
                                     spec.max_steps_per_epoch)
        total = self.steps * spec.epochs
        warmup = min(total, int(round(spec.warmup_epochs * self.steps)))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, total, max(1, warmup), spec.min_lr / spec.lr))
        self.crops = TrainCrops(self.split.train, self.entry.preprocessing, spec.crop_scale, spec.hflip, runtime.seed)
        self.corrupt = CorruptionAugmenter(spec.augment)
        self.augmix = AugMix(spec.augmix) if spec.augmix.enabled else None
        # fp16 needs loss scaling; bf16 and fp32 do not
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda"
                                           and runtime.resolved_precision == "fp16")
        self.state = TrainState()
        self.skipped: dict[str, str] = {}

    def _setup_model(self, entry: ModelEntry) -> None:
        module = entry.module.to(self.device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.teacher = copy.deepcopy(module).eval().requires_grad_(False) if self.spec.distill.weight > 0 else None
        set_train_mode(module, self.spec.freeze_bn)
        self.model: nn.Module = module
        if self.world.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(module, device_ids=ids)
        index = imagenet_classes().index_of
        to_model = torch.full((len(imagenet_classes()),), -1, dtype=torch.int64)
        to_model[torch.tensor([index[w] for w in entry.wnids])] = torch.arange(len(entry.wnids))
        self.to_model = to_model.to(self.device)  # global label -> model output (-1: not a class of the model)
        self.model_classes = {index[w] for w in entry.wnids}

    # ----------------------------------------------------------------------------------------------- steps

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        x = self.entry.preprocessing.normalize(x)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def loss(self, batch: dict, seed: int) -> torch.Tensor:
        """The step's loss: cross-entropy on the training view(s) — the (corrupted) image, and the clean one too
        with ``augment.include_clean`` — plus the AugMix consistency and the distillation terms when they are on."""
        spec = self.spec
        x = batch["images"].to(self.device, non_blocking=True).float().div_(255.0)
        views = [x] if spec.augment.include_clean else []
        views.append(self.corrupt(x, batch["image_ids"], seed))
        n_base = len(views)
        if self.augmix is not None:
            views += [self.augmix(x, seed + 1), self.augmix(x, seed + 2)]
        with self.runtime.autocast():
            logits = self.model(self._inputs(torch.cat(views))).float().chunk(len(views))
        loss = logits[0].new_zeros(())
        labels = batch["labels"].to(self.device)
        target = torch.where(labels >= 0, self.to_model[labels.clamp(min=0)], -1)
        if spec.label_weight > 0 and bool((target >= 0).any()):
            ce = sum(F.cross_entropy(lg, target, ignore_index=-1, label_smoothing=spec.label_smoothing)
                     for lg in logits[:n_base]) / n_base
            loss = loss + spec.label_weight * ce
        if self.augmix is not None:
            loss = loss + spec.augmix.jsd_weight * jensen_shannon([logits[n_base - 1], *logits[n_base:]])
        if self.teacher is not None:
            with torch.no_grad(), self.runtime.autocast():
                teacher = self.teacher(self._inputs(x)).float()
            kd = sum(distillation(lg, teacher, spec.distill.temperature) for lg in logits) / len(logits)
            loss = loss + spec.distill.weight * kd
        return loss

    def train_step(self, batch: dict) -> float:
        seed = step_seed(self.runtime.seed, self.state.epoch, self.state.global_step)
        loss = self.loss(batch, seed)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return float(loss.detach())

    # ---------------------------------------------------------------------------------------------- epochs

    def train_epoch(self) -> float:
        """The rest of the epoch in progress (all of it, unless resumed mid-epoch); returns its mean loss."""
        st, spec = self.state, self.spec
        self.crops.epoch = st.epoch
        order = epoch_indices(len(self.crops), self.runtime.seed, st.epoch, self.world.rank, self.world.size)
        order = order[st.step_in_epoch * spec.batch_size: self.steps * spec.batch_size]
        loader = train_loader(self.crops, order, spec.batch_size, self.runtime.workers,
                              pin=self.device.type == "cuda")
        bar = self._progress(self.steps - st.step_in_epoch)
        for batch in loader:
            self.skipped.update(batch["skipped"])
            # A batch with no readable image is skipped; under DDP that rank would then miss a gradient
            # all-reduce (not handled: it needs every image of a batch to be unreadable).
            if "images" in batch:
                loss = self.train_step(batch)
                n = len(batch["labels"])
                st.loss_sum, st.loss_count = st.loss_sum + loss * n, st.loss_count + n
            st.step_in_epoch += 1
            st.global_step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"loss {st.loss_sum / max(1, st.loss_count):.3f}")
            if spec.checkpoint_every_steps and st.global_step % spec.checkpoint_every_steps == 0:
                self.save(best=False)
        if bar is not None:
            bar.close()
        self._report_skipped()
        sync_buffers(self.world, self.entry.module)
        loss_sum, loss_count = sum_across(self.world, [st.loss_sum, st.loss_count], self.device)
        return loss_sum / max(1.0, loss_count)

    def _report_skipped(self) -> None:
        """Unreadable training images are skipped, never a crash: counted in the log, listed in skipped.csv."""
        if self.skipped and self.world.is_main:
            import pandas as pd

            from robustbench_in.files import atomic_write

            frame = pd.DataFrame(sorted(self.skipped.items()), columns=["path", "reason"])
            atomic_write(self.run_dir / "skipped.csv", lambda p: frame.to_csv(p, index=False))
            self.log(f"note: {len(frame)} unreadable training image(s) skipped, listed in "
                     f"{self.run_dir / 'skipped.csv'}")

    def _progress(self, total: int):
        if not (self.world.is_main and self.runtime.show_progress):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, unit="step", desc=f"epoch {self.state.epoch + 1}/{self.spec.epochs}", leave=False)

    def validate(self) -> dict:
        """Clean loss (NLL of the true class) and top-1/top-5 error on the held-out images, scored by the engine's
        own clean cell, so they mean what a sweep's clean row means (each rank takes every world-th image)."""
        val = self.split.val
        if not val.items:
            return {"val_loss": math.nan, "val_top1_err": math.nan, "val_top5_err": math.nan, "n_val": 0}
        scorer = Scorer(self.entry, self.runtime)  # the bare module, not the DDP wrapper: ranks differ in batches
        shard = list(range(self.world.rank, len(val.items), self.world.size))
        sums = [0.0, 0.0, 0.0, 0.0]  # -log p(true), wrong@1, wrong@5, n
        for batch in make_loader(val, self.entry.preprocessing, self.spec.batch_size, self.runtime.workers, shard):
            if "images" not in batch:
                continue
            x = batch["images"].to(self.device).float().div_(255.0)
            accepted = torch.cat([batch["labels"][:, None], batch["alt_labels"]], 1).to(self.device)
            rec = batch_records(scorer, CLEAN_CELL, x, batch, accepted)
            rec = rec[rec["label"].isin(self.model_classes)]  # labelled images of the model's classes
            sums[0] += nll(rec["p_true"].to_numpy(np.float64)) * len(rec) if len(rec) else 0.0
            sums[1] += float((~rec["correct1"]).sum())
            sums[2] += float((~rec["correct5"]).sum())
            sums[3] += len(rec)
        set_train_mode(self.entry.module, self.spec.freeze_bn)
        loss, wrong1, wrong5, n = sum_across(self.world, sums, self.device)
        nan = math.nan
        return {"val_loss": loss / n if n else nan, "val_top1_err": wrong1 / n if n else nan,
                "val_top5_err": wrong5 / n if n else nan, "n_val": int(n)}

    def fit(self) -> Path:
        """Every remaining epoch; returns the path of the last checkpoint."""
        st, spec = self.state, self.spec
        self.log(f"train {self.entry.name} on {len(self.split.train.items)} images ({self.split.val.name}: "
                 f"{len(self.split.val.items)} held out), {spec.epochs} epochs x {self.steps} steps of "
                 f"{spec.batch_size} x {self.world.size} process(es); device {self.device} "
                 f"({self.runtime.resolved_precision})")
        while st.epoch < spec.epochs:
            start, images_before = time.perf_counter(), st.loss_count
            train_loss = self.train_epoch()
            row = {"epoch": st.epoch + 1, "step": st.global_step, "lr": self.optimizer.param_groups[0]["lr"],
                   "train_loss": train_loss, **self.validate()}
            seconds = time.perf_counter() - start
            images = sum_across(self.world, [st.loss_count - images_before], self.device)[0]
            row.update(seconds=round(seconds, 3), images_per_s=round(images / seconds, 2) if seconds else math.nan)
            st.curve.append(row)
            st.epoch, st.step_in_epoch, st.loss_sum, st.loss_count = st.epoch + 1, 0, 0.0, 0.0
            # best.pt: the lowest held-out top-1 error (every epoch's, when nothing is held out)
            best = not row["n_val"] or row["val_top1_err"] < st.best_top1_err
            st.best_top1_err = min(st.best_top1_err, row["val_top1_err"]) if row["n_val"] else st.best_top1_err
            self.log(f"epoch {row['epoch']}/{spec.epochs}: loss {train_loss:.4f}, held-out top-1 "
                     f"{100 * row['val_top1_err']:.2f}% top-5 {100 * row['val_top5_err']:.2f}% "
                     f"(n={row['n_val']}), {row['images_per_s']:.1f} images/s")
            if self.world.is_main:
                write_curve(st.curve, self.run_dir)
            self.save(best=best)
        if not weights_agree(self.world, self.entry.module, self.device):
            raise RuntimeError("the ranks ended with different weights")
        if self.world.distributed:
            self.log(f"all {self.world.size} ranks hold identical weights")
        return self.run_dir / checkpoints.LAST

    def save(self, best: bool) -> None:
        if self.world.is_main:
            checkpoints.save(self, best=best)
        barrier(self.world)
