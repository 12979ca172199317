"""Training checkpoints: ``checkpoints/last.pt`` after every epoch (and every N steps if asked), ``best.pt`` at
the lowest held-out top-1 error; each written atomically.

A training checkpoint is a model checkpoint (``robustbench_in.models.checkpoint``: weights, architecture, class
table, preprocessing) plus the training config and its hash, the metrics, the software versions, and the state
that resumes the run exactly: optimiser, schedule, position in the data, the curve so far and the RNG state.
Everything is plain tensors and Python types, so it loads with ``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from robustbench_in.files import stable_hash
from robustbench_in.models.checkpoint import read_checkpoint, save_checkpoint
from robustbench_in.provenance import git_commit, software_versions

if TYPE_CHECKING:
    from robustbench_in.train.trainer import Trainer

LAST = Path("checkpoints") / "last.pt"
BEST = Path("checkpoints") / "best.pt"


def recipe_hash(config: dict) -> str:
    """Hash of what determines a run's weights: model, data and train groups, and the seed (not train.resume,
    not workers, batch sizes of evaluation or the device)."""
    train = {k: v for k, v in config.get("train", {}).items() if k != "resume"}
    return stable_hash({"model": config.get("model"), "data": config.get("data"), "train": train,
                        "seed": config.get("runtime", {}).get("seed")})


def _rng_state() -> dict:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def save(trainer: Trainer, best: bool) -> Path:
    """last.pt (and best.pt) of the trainer as it stands now."""
    st = trainer.state
    metrics = st.curve[-1] if st.curve else {}
    payload = dict(
        train={"config": trainer.config, "recipe_hash": recipe_hash(trainer.config),
               "state": dataclasses.asdict(st), "optimizer": trainer.optimizer.state_dict(),
               "scheduler": trainer.scheduler.state_dict(), "rng": _rng_state(), "world_size": trainer.world.size},
        metrics=metrics, versions=software_versions(), git_commit=git_commit())
    last = save_checkpoint(trainer.run_dir / LAST, trainer.entry, **payload)
    if best:
        save_checkpoint(trainer.run_dir / BEST, trainer.entry, **payload)
    return last


def resume(trainer: Trainer) -> bool:
    """Load ``<run dir>/checkpoints/last.pt`` into the trainer; False when there is none (a fresh start)."""
    path = trainer.run_dir / LAST
    if not path.is_file():
        trainer.log(f"train.resume=true but {path} does not exist yet: starting from the beginning")
        return False
    ckpt = read_checkpoint(path)
    train = ckpt.get("train")
    if not isinstance(train, dict) or "state" not in train:
        raise ValueError(f"{path} holds no training state (a checkpoint of a finished export?): cannot resume it")
    if train["recipe_hash"] != recipe_hash(trainer.config):
        raise ValueError(f"{path} was written by another model/data/train config or seed: resume with the same "
                         "command line, or start a new run folder")
    if train.get("world_size", 1) != trainer.world.size:
        raise ValueError(f"{path} was written by {train.get('world_size', 1)} process(es), this run has "
                         f"{trainer.world.size}: resume with the same number")
    trainer.entry.module.load_state_dict(ckpt["state_dict"])
    trainer.optimizer.load_state_dict(train["optimizer"])
    trainer.scheduler.load_state_dict(train["scheduler"])
    trainer.state = type(trainer.state)(**train["state"])
    torch.set_rng_state(train["rng"]["cpu"])
    if "cuda" in train["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(train["rng"]["cuda"])
    st = trainer.state
    trainer.log(f"resume: {path} at epoch {st.epoch + 1}, step {st.step_in_epoch} of {trainer.steps} "
                f"(global step {st.global_step})")
    return True
