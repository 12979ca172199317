"""The tasks behind ``task=...`` (eval, gallery, report, train, export): each turns the groups it needs into objects,
checks them, then works.

Tasks register by name (:func:`register_task`); the CLI dispatches on ``cfg.task`` through the registry.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf

import corruptions
from robustbench_in.data.datasets import ImageList, build_dataset
from robustbench_in.evaluate.engine import EvalContext, evaluate
from robustbench_in.evaluate.results import ResultStore
from robustbench_in.evaluate.suite import Cell, build_cells, suite_corruptions
from robustbench_in.models.registry import ModelEntry, create_model
from robustbench_in.models.weights import weights_fingerprint
from robustbench_in.provenance import git_commit, software_versions

TaskFn = Callable[[DictConfig], object]
TASKS: dict[str, TaskFn] = {}


class UserError(Exception):
    """Bad input: reported as one line, never as a traceback."""


def register_task(name: str):
    def decorator(fn: TaskFn) -> TaskFn:
        TASKS[name] = fn
        return fn

    return decorator


def writable_dir(path: Path, key: str) -> Path:
    """Create ``path`` and prove it can be written, before any work is done."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise UserError(f"{key}={path} is not writable ({err.strerror or err}): choose another folder") from None
    return path


def results_dir(cfg: DictConfig) -> Path:
    if cfg.get("results_dir"):
        return writable_dir(Path(cfg.results_dir), "results_dir")
    from hydra.core.hydra_config import HydraConfig

    return writable_dir(Path(HydraConfig.get().runtime.output_dir), "hydra.run.dir")


def _print_rows(store: ResultStore, model_name: str) -> None:
    import pandas as pd

    rows = store.rows()
    show = rows[rows["model"] == model_name][["model", "dataset", "corruption", "severity", "n", "top1_err",
                                             "top5_err", "images_per_s"]]
    with pd.option_context("display.width", 120, "display.max_rows", 200):
        print(show.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    n_skipped = int(rows["n_skipped"].max()) if len(rows) else 0
    print(f"results: {store.csv}" + (f"; {n_skipped} images skipped (unreadable, or of unknown scale), listed in "
                                      f"{store.root / 'skipped.csv'}" if n_skipped else ""))


@register_task("eval")
def task_eval(cfg: DictConfig) -> Path:
    """Every cell of the suite for one model on one dataset, into results.csv (resuming finished cells)."""
    store, entry, _ = run_eval(cfg)
    _print_rows(store, entry.name)
    return store.csv


def run_eval(cfg: DictConfig) -> tuple[ResultStore, ModelEntry, ImageList]:
    """Check the model, data and suite, then evaluate every unfinished cell into the run's results folder."""
    suite, runtime = OmegaConf.to_object(cfg.suite), OmegaConf.to_object(cfg.runtime)
    model_spec, data_spec = OmegaConf.to_object(cfg.model), OmegaConf.to_object(cfg.data)
    store = ResultStore(results_dir(cfg))
    images = build_dataset(data_spec)
    cells = build_cells(suite) if images.tree is None else []  # a tree's cells are its folders (file_plan)
    entry = create_model(model_spec)
    plan = file_plan(entry, images, suite) if images.tree is not None else [(entry, images, cells)]
    identity = {"source": model_spec.source, "name": entry.name, "weights": entry.weights,
                "weights_sha256": weights_fingerprint(entry.module), "architecture": list(entry.architecture),
                "num_classes": len(entry.wnids)}
    ctx = EvalContext(dataset_name=images.name, backend=f"robustbench_in.corruptions-{corruptions.__version__}",
                      versions=software_versions(), git_commit=git_commit(), model_identity=identity)
    print(f"model {entry.name} ({entry.source}, weights {entry.weights}); {entry.preprocessing.describe()}")
    print(f"data {images.name}: {len(images.items)} images from {images.root}; suite {suite.name}: "
          f"{sum(len(c) for _, _, c in plan)} cells; device {runtime.torch_device} ({runtime.resolved_precision})")
    for note in images.notes:
        print(f"note: {note}")
    for part_entry, part, part_cells in plan:
        evaluate(part_entry, part, part_cells, runtime, store, ctx)
    return store, entry, images


def file_plan(entry: ModelEntry, images: ImageList, suite) -> list[tuple[ModelEntry, ImageList, list[Cell]]]:
    """What to evaluate for a tree of corrupted files (data=imagenet_c_folder): the clean cell from
    ``data.clean_root`` with the model's val transform, then each folder the suite asks for as it is (resized only
    to the model's input size, never again from 256 and cropped)."""
    from dataclasses import replace

    from robustbench_in.data.preprocessing import Preprocessing
    from robustbench_in.evaluate.suite import CLEAN_CELL, file_cells

    plan = [(entry, images, [CLEAN_CELL])] if images.items and suite.include_clean else []
    as_is = replace(entry, preprocessing=entry.preprocessing.override(
        Preprocessing(resize_size=entry.preprocessing.input_size)))
    return plan + [(as_is, part, [cell]) for cell, part in file_cells(suite, images.tree)]


@register_task("gallery")
def task_gallery(cfg: DictConfig) -> Path:
    """One image under every corruption of the suite (every registered one for a suite without any)."""
    from robustbench_in.report.gallery import write_gallery

    suite, runtime = OmegaConf.to_object(cfg.suite), OmegaConf.to_object(cfg.runtime)
    gallery = OmegaConf.to_object(cfg.gallery)
    chosen = suite_corruptions(suite) or [corruptions.get_corruption(n) for n in corruptions.list_corruptions()]
    out = results_dir(cfg) / gallery.out
    images = build_dataset(OmegaConf.to_object(cfg.data))
    preprocessing = create_model(OmegaConf.to_object(cfg.model)).preprocessing
    write_gallery(images, preprocessing, chosen, suite.severities, out, image_index=gallery.image,
                  seed=runtime.seed)
    print(f"gallery: {out}")
    return out


def sweep_dirs(value) -> list[Path]:
    """``sweep_dir`` as a list of existing folders: one path or a list of them."""
    if value is None or value == "" or (OmegaConf.is_list(value) and len(value) == 0):
        raise UserError("task=report needs sweep_dir=DIR or sweep_dir=[DIR,...] (folders holding results.csv "
                        "files, e.g. multirun/)")
    dirs = [Path(str(d)) for d in (value if OmegaConf.is_list(value) or isinstance(value, list) else [value])]
    for d in dirs:
        if not d.exists():
            raise UserError(f"sweep_dir {d} does not exist")
    return dirs


@register_task("report")
def task_report(cfg: DictConfig) -> Path:
    """Tables and plots from every results.csv under the sweep folders, into <first sweep>/report/."""
    from robustbench_in.report.run import run_report

    dirs = sweep_dirs(cfg.sweep_dir)
    report = OmegaConf.to_object(cfg.report)
    out = writable_dir(Path(report.out_dir) if report.out_dir else dirs[0] / "report", "report.out_dir")
    written = run_report(dirs, out, baseline=report.baseline, reference_dataset=report.reference_dataset)
    for kind, path in written.items():
        print(f"{kind}: {path}")
    print(f"report: {out}")
    return out


@register_task("train")
def task_train(cfg: DictConfig) -> Path:
    """Train or fine-tune ``model`` on ``data`` with the ``train`` recipe; checkpoints go to <run dir>/checkpoints/."""
    from robustbench_in.train import checkpoints
    from robustbench_in.train.trainer import Trainer

    spec, runtime = OmegaConf.to_object(cfg.train), OmegaConf.to_object(cfg.runtime)
    model_spec, data_spec = OmegaConf.to_object(cfg.model), OmegaConf.to_object(cfg.data)
    run_dir = results_dir(cfg)
    config = {k: OmegaConf.to_container(cfg[k], resolve=True, enum_to_str=True)
              for k in ("model", "data", "train", "runtime")}
    trainer = Trainer(model_spec, data_spec, spec, runtime, run_dir, config)
    if spec.resume:
        checkpoints.resume(trainer)
    last = trainer.fit()
    if trainer.world.is_main:
        print(f"curve: {run_dir / 'curve.csv'} and {run_dir / 'curve.png'}")
        print(f"checkpoint: {last}")
        print(f"evaluate it: python main.py model=checkpoint model.weights_file={last} data.root=... suite=...")
    return last


@register_task("export")
def task_export(cfg: DictConfig) -> Path:
    """The suite's corrupted images as an ImageNet-C-style JPEG tree with a manifest; ``export.verify=true``
    re-hashes an existing one instead."""
    from robustbench_in.export import MANIFEST, export_suite, verify_export

    spec = OmegaConf.to_object(cfg.export)
    if not spec.out_dir:
        raise UserError("task=export needs export.out_dir=DIR (the <corruption>/<severity>/<wnid>/ tree goes there)")
    if spec.verify:
        report = verify_export(Path(spec.out_dir), spec.threads)
        if not report.ok:
            print(*(report.mismatched + report.missing + report.extra)[:20], sep="\n")
            raise UserError(report.summary())
        print(report.summary())
        return Path(spec.out_dir) / MANIFEST
    out = writable_dir(Path(spec.out_dir), "export.out_dir")
    suite, runtime = OmegaConf.to_object(cfg.suite), OmegaConf.to_object(cfg.runtime)
    images = build_dataset(OmegaConf.to_object(cfg.data))
    preprocessing = create_model(OmegaConf.to_object(cfg.model)).preprocessing
    manifest = export_suite(images, suite, preprocessing, out, runtime=runtime, overwrite=spec.overwrite,
                            threads=spec.threads)
    print(f"export: {manifest['n_files']} files, {len(manifest['skipped'])} images skipped; manifest {out / MANIFEST}")
    return out / MANIFEST


from robustbench_in import demo  # noqa: E402,F401  (registers task=demo, built from the tasks above)
