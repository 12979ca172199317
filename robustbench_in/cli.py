"""Tasks behind ``main.py``: eval (the default), gallery and report; plus one-line handling of bad input."""

from __future__ import annotations

import dataclasses
import difflib
import importlib.metadata
import platform
import re
import subprocess
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

import corruptions
from corruptions.registry import Corruption, UnknownCorruptionError, check_severity, get_corruption
from robustbench_in.config import Config, one_line_error, register_configs
from robustbench_in.data import DatasetError, build_dataset
from robustbench_in.engine import Cell, EvalContext, RunSettings, evaluate, resolve_device
from robustbench_in.models import ModelError, ModelSpec, create_model
from robustbench_in.results import ResultStore

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"
CONFIG_GROUPS = ("model", "data", "suite", "runtime")
USER_ERRORS = (DatasetError, ModelError, UnknownCorruptionError, ValueError, FileNotFoundError, KeyError, ImportError)
FAILED_JOBS: list[str] = []


class UserError(Exception):
    """Bad input: reported as one line, never as a traceback."""


# ------------------------------------------------------------------------------------------ building parts


def model_spec(cfg: DictConfig) -> ModelSpec:
    m = OmegaConf.to_container(cfg.model, resolve=True)
    return ModelSpec(source=m["source"], name=m.get("name") or m["source"], weights=m.get("weights"),
                     weights_file=m.get("weights_file"), random_init=bool(m.get("random_init")),
                     num_classes=int(m.get("num_classes", 1000)), preprocessing=m.get("preprocessing") or {})


def _plugin_corruption(entry: dict) -> Corruption:
    """A suite entry with ``_target_``: any importable callable ``fn(images, severity, seeds)``, or a factory
    (called with the entry's other keys) returning one or a :class:`Corruption`. The entry's name, category,
    random and runs_on win over what a factory picked."""
    from hydra.errors import InstantiationException
    from hydra.utils import get_method, instantiate

    entry = dict(entry)
    target = entry.pop("_target_")
    meta = {k: entry.pop(k) for k in ("name", "category", "random", "runs_on") if k in entry}
    meta = {k: v for k, v in meta.items() if v is not None}  # name: null -> the default
    if "random" in meta:
        meta["random"] = bool(meta["random"])
    try:
        fn = instantiate({"_target_": target, **entry}) if entry else get_method(target)
    except InstantiationException as err:  # show the factory's own error (one line), not Hydra's wrapper
        raise (err.__cause__ or err) from None
    if isinstance(fn, Corruption):
        return dataclasses.replace(fn, **meta)
    meta = {"name": target.rsplit(".", 1)[-1], **meta}
    return Corruption(fn=fn, description=(getattr(fn, "__doc__", "") or "").strip().split("\n")[0], **meta)


def suite_corruptions(suite: DictConfig) -> list[Corruption]:
    out = []
    for entry in suite.corruptions:
        if isinstance(entry, str):
            out.append(get_corruption(entry))
        else:
            out.append(_plugin_corruption(OmegaConf.to_container(entry, resolve=True)))
    return out


def build_cells(suite: DictConfig) -> list[Cell]:
    """The suite's (corruption, severity) cells, clean first."""
    cells = [Cell("clean", 0, "clean")] if suite.include_clean else []
    severities = [check_severity(s) for s in suite.severities]
    for c in suite_corruptions(suite):
        for s in severities:
            cells.append(Cell(c.name, s, c.category, c, bool(suite.faithful_jpeg), int(suite.jpeg_quality)))
    if not cells:
        raise UserError("the suite has no cells: set suite.corruptions or suite.include_clean=true")
    return cells


def run_settings(cfg: DictConfig) -> RunSettings:
    rt = cfg.runtime
    device = resolve_device(rt.device)
    precision = getattr(rt.precision, "value", rt.precision)
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    channels_last = device.type == "cuda" if rt.channels_last is None else bool(rt.channels_last)
    if rt.batch_size < 1 or rt.shard_size < 1 or rt.workers < 0:
        raise UserError("runtime.batch_size and runtime.shard_size must be >= 1, runtime.workers >= 0")
    return RunSettings(device=device, batch_size=int(rt.batch_size), workers=int(rt.workers), precision=precision,
                       channels_last=channels_last, shard_size=int(rt.shard_size), seed=int(rt.seed),
                       progress=bool(rt.progress) and sys.stderr.isatty())


def software_versions() -> str:
    parts = [f"python={platform.python_version()}"]
    for pkg in ("robustbench_in", "torch", "torchvision", "timm", "numpy", "pillow"):
        try:
            parts.append(f"{pkg}={importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return " ".join(parts)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (out.stdout.strip() + ("-dirty" if dirty else "")) if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def results_dir(cfg: DictConfig) -> Path:
    if cfg.get("results_dir"):
        return Path(cfg.results_dir)
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


# ------------------------------------------------------------------------------------------------ tasks


def task_eval(cfg: DictConfig) -> Path:
    cells = build_cells(cfg.suite)
    settings = run_settings(cfg)
    images = build_dataset(**OmegaConf.to_container(cfg.data, resolve=True))
    spec = model_spec(cfg)
    entry = create_model(spec)
    store = ResultStore(results_dir(cfg))
    identity = {"source": spec.source, "name": spec.name, "weights": entry.weights, "num_classes": spec.num_classes}
    ctx = EvalContext(dataset_name=images.name, backend=f"robustbench_in.corruptions-{corruptions.__version__}",
                      versions=software_versions(), git_commit=git_commit(), model_identity=identity)
    print(f"model {entry.name} ({entry.source}, weights {entry.weights}); {entry.preprocessing.describe()}")
    print(f"data {images.name}: {len(images.items)} images from {images.root}; suite {cfg.suite.name}: "
          f"{len(cells)} cells; device {settings.device} ({settings.precision})")
    for note in images.notes:
        print(f"note: {note}")
    evaluate(entry, images, cells, settings, store, ctx)
    rows = store.rows()
    skipped = store.root / "skipped.csv"
    n_skipped = int(rows["n_skipped"].max()) if len(rows) else 0
    show = rows[rows["model"] == entry.name][["model", "dataset", "corruption", "severity", "n", "top1_err",
                                              "top5_err", "images_per_s"]]
    import pandas as pd

    with pd.option_context("display.width", 120, "display.max_rows", 200):
        print(show.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"results: {store.csv}" + (f"; {n_skipped} unreadable images skipped, listed in {skipped}"
                                      if n_skipped else ""))
    return store.csv


def task_gallery(cfg: DictConfig) -> Path:
    from robustbench_in.gallery import write_gallery

    out = results_dir(cfg) / cfg.gallery.out
    images = build_dataset(**OmegaConf.to_container(cfg.data, resolve=True))
    entry_pre = create_model(model_spec(cfg)).preprocessing
    chosen = suite_corruptions(cfg.suite) or [get_corruption(n) for n in (*corruptions.IMAGENET_C,
                                                                          *corruptions.IMAGENET_C_EXTRA)]
    write_gallery(images, entry_pre, chosen, [check_severity(s) for s in cfg.suite.severities],
                  out, image_index=int(cfg.gallery.image), seed=int(cfg.runtime.seed))
    print(f"gallery: {out}")
    return out


def task_report(cfg: DictConfig) -> Path:
    from robustbench_in.report import run_report

    if not cfg.sweep_dir:
        raise UserError("task=report needs sweep_dir=[DIR,...] (folders holding results.csv files)")
    dirs = [Path(d) for d in cfg.sweep_dir]
    for d in dirs:
        if not d.exists():
            raise UserError(f"sweep_dir {d} does not exist")
    out = Path(cfg.report.out_dir) if cfg.report.out_dir else results_dir(cfg) / "report"
    written = run_report(dirs, out, baseline=cfg.report.baseline)
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return out


TASKS = {"eval": task_eval, "gallery": task_gallery, "report": task_report}


def run(cfg: DictConfig):
    """Hydra task function: dispatch, turning bad input into one line (and exit 2 for a single run)."""
    try:
        if cfg.task not in TASKS:
            close = difflib.get_close_matches(str(cfg.task), TASKS, n=1)
            raise UserError(f"unknown task {cfg.task!r}: use one of {', '.join(TASKS)}"
                            + (f" (did you mean {close[0]}?)" if close else ""))
        return TASKS[cfg.task](cfg)
    except (UserError, *USER_ERRORS) as err:
        msg = f"error: {one_line_error(err)}"
        print(msg, file=sys.stderr)
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized() and HydraConfig.get().mode.name == "MULTIRUN":
            FAILED_JOBS.append(msg)  # the other jobs of the sweep still run
            return None
        sys.exit(2)


# ------------------------------------------------------------------------------------------------ CLI


def _dirname(override_dirname: str) -> str:
    """A short, filesystem-safe run folder name derived from the overrides (same command -> same folder)."""
    if not override_dirname:
        return "default"
    safe = re.sub(r"[^A-Za-z0-9_.,=+-]+", "_", override_dirname).strip("_")
    if len(safe) > 120:
        import hashlib

        safe = safe[:100] + "-" + hashlib.sha1(override_dirname.encode()).hexdigest()[:10]
    return safe


def _check_group_options(overrides: list[str]) -> None:
    """``model=foo`` with no conf/model/foo.yaml -> one line with the close matches."""
    for ov in overrides:
        key, sep, value = ov.lstrip("+~").partition("=")
        if not sep or key not in CONFIG_GROUPS:
            continue
        options = sorted(p.stem for p in (CONF_DIR / key).glob("*.yaml"))
        for v in value.split(","):
            if v and v not in options:
                close = difflib.get_close_matches(v, options, n=3)
                raise UserError(f"unknown {key} '{v}': choose one of {', '.join(options)}"
                                + (f" (did you mean {', '.join(close)}?)" if close else ""))


def _first_of_sweeps(overrides: list[str]) -> list[str]:
    """For validating a multirun: each swept value is checked on its own (here, the first of each)."""
    out = []
    for ov in overrides:
        key, sep, value = ov.partition("=")
        if sep and "," in value and not value.startswith("[") and not key.startswith("hydra"):
            value = value.split(",")[0]
        if key.startswith("hydra"):
            continue
        out.append(f"{key}={value}" if sep else ov)
    return out


def validate_overrides(overrides: list[str]) -> None:
    """Compose the config once before Hydra runs it, so a typo gets one line instead of a traceback."""
    from hydra import compose, initialize_config_dir

    _check_group_options(overrides)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=_first_of_sweeps(overrides))
    OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False)
    if cfg.task not in TASKS:
        raise UserError(f"unknown task {cfg.task!r}: use one of {', '.join(TASKS)}")
    if cfg.task == "eval":
        for key in ("model", "data"):
            for k in cfg[key].keys():
                if OmegaConf.is_missing(cfg[key], k):
                    raise UserError(f"config key '{key}.{k}' must be set (e.g. {key}.{k}=...)")
        build_cells(cfg.suite)


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("rbin_dirname"):
        OmegaConf.register_new_resolver("rbin_dirname", _dirname)


def infer_data_group(argv: list[str]) -> list[str]:
    """``data.root=DIR`` without a ``data=`` choice means the user's own images, not the embedded photos:
    add ``data=imagenet_folder`` (``data=imagenet_flat`` when a ``data.labels_file`` is given too)."""
    keys = [a.split("=", 1)[0].lstrip("+~") for a in argv if "=" in a and not a.startswith("-")]
    if "data" in keys or "data.root" not in keys:
        return argv
    choice = "imagenet_flat" if "data.labels_file" in keys else "imagenet_folder"
    print(f"note: data.root given without data=...; using data={choice}")
    return [*argv, f"data={choice}"]


def cli_main(argv: list[str] | None = None) -> int:
    import hydra

    register_resolvers()
    register_configs()
    argv = infer_data_group(list(sys.argv[1:] if argv is None else argv))
    overrides = [a for a in argv if not a.startswith("-") and "=" in a]
    if not any(a in ("-h", "--help", "--hydra-help", "-c", "--cfg", "--info") or a.startswith("--info")
               for a in argv):
        try:
            validate_overrides(overrides)
        except Exception as err:  # noqa: BLE001 — any composition error becomes one line
            print(f"error: {one_line_error(err)}", file=sys.stderr)
            return 2
    main = hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(run)
    sys.argv = [sys.argv[0], *argv]
    main()
    if FAILED_JOBS:
        print(f"{len(FAILED_JOBS)} job(s) of the sweep failed:", *FAILED_JOBS, sep="\n", file=sys.stderr)
        return 1
    return 0


_ = Config  # the schema is registered by register_configs()
