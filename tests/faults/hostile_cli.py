"""The whole command line against hostile input: every run must end with rc 0, or rc 2 and one ``error:`` line.

Builds a folder of bad files (broken and high-bit-depth images, decompression bombs, hidden folders, bad label
files, bad checkpoints, broken results files) and runs ``main.py`` once per case, as a user would. A traceback,
another exit code or more than one line on stderr for a failing run is a defect. Run it directly::

    python tests/faults/hostile_cli.py [--jobs 2] [--keep DIR]

``tests/faults/test_hostile_cli.py`` runs it under pytest. Every promise it checks is listed in
``tests/faults/README.md``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import struct
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
GOOD_WNID = "n02123045"  # tabby: the class of skimage's chelsea.png


def main_cmd(*args: str) -> list[str]:
    """``python main.py ARGS`` without worker processes or progress bars (quiet, and fast to start)."""
    return [sys.executable, str(REPO / "main.py"), *args, "runtime.workers=0", "runtime.progress=false"]


# ------------------------------------------------------------------------------------------------ bad files


def _chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png16(path: Path, values: np.ndarray) -> None:
    """A 16-bit PNG (grayscale HxW or RGB HxWx3) written by hand: PIL writes 16-bit grayscale only."""
    h, w = values.shape[:2]
    color = 2 if values.ndim == 3 else 0
    raw = b"".join(b"\x00" + values[i].astype(">u2").tobytes() for i in range(h))
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color, 0, 0, 0))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))


def _bomb_png(path: Path, side: int = 12000) -> None:
    """A small PNG that declares side x side pixels (one deflate stream of zero rows)."""
    row = b"\x00" + b"\x00" * side
    data = zlib.compress(row * side, 9)

    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + _chunk(b"IDAT", data) + _chunk(b"IEND", b""))


def photo() -> np.ndarray:
    """A real photo (skimage's chelsea, a tabby cat), HxWx3 uint8."""
    import skimage.data

    return skimage.data.chelsea()


def write_bad_images(folder: Path) -> dict[str, str]:
    """A <wnid>/ folder with 3 good photos and every kind of bad or awkward file; name -> what must happen."""
    from PIL import Image

    cls = folder / GOOD_WNID
    cls.mkdir(parents=True, exist_ok=True)
    cat = photo()
    gray16 = (cat.mean(2) * 257).astype(np.uint16)
    for k in range(3):
        Image.fromarray(np.roll(cat, 20 * k, axis=1)).save(cls / f"good_{k}.JPEG", quality=90)
    _png16(cls / "gray16.png", gray16)  # scored: scaled by 1/257, not clipped to white
    _png16(cls / "rgb16.png", (cat.astype(np.uint16) * 257))  # scored (PIL keeps the high byte)
    Image.fromarray((cat.mean(2) / 255).astype(np.float32)).save(cls / "float01.tif")  # scored: x255
    Image.fromarray((cat.mean(2) * 4).astype(np.float32)).save(cls / "float_hdr.tif")  # skipped: unknown scale
    Image.fromarray((cat.mean(2) * 1e6).astype(np.int32)).save(cls / "int32.tif")  # skipped: unknown scale
    _bomb_png(cls / "bomb.png")  # skipped: above data.max_pixels
    Image.fromarray(cat).convert("CMYK").save(cls / "cmyk.JPEG")  # scored
    Image.fromarray(cat[:1, :1]).save(cls / "one_pixel.png")  # scored (upsampled)
    good = (cls / "good_0.JPEG").read_bytes()
    (cls / "truncated.JPEG").write_bytes(good[: len(good) // 3])  # skipped
    (cls / "empty.JPEG").write_bytes(b"")  # skipped
    (cls / "text.JPEG").write_text("<html>not an image</html>")  # skipped
    (cls / "._good_0.JPEG").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # hidden: ignored
    hidden = folder / ".ipynb_checkpoints"
    hidden.mkdir(exist_ok=True)
    (hidden / "good_0-checkpoint.JPEG").write_bytes(good)  # hidden folder: ignored
    return {"scored": "good_0 good_1 good_2 gray16 rgb16 float01 cmyk one_pixel",
            "skipped": "float_hdr int32 bomb truncated empty text"}


def write_label_files(folder: Path) -> dict[str, Path]:
    """A flat folder of two photos, and label files that are wrong in every way the issue lists."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for k in range(2):
        Image.fromarray(photo()).save(folder / f"ILSVRC2012_val_0000000{k + 1}.JPEG")
    files = {
        "ok.txt": "ILSVRC2012_val_00000001.JPEG 281\nILSVRC2012_val_00000002.JPEG n02123045\n",
        "duplicate.txt": "ILSVRC2012_val_00000001.JPEG 281\nILSVRC2012_val_00000001.JPEG 282\n",
        "empty_label.csv": "ImageId,PredictionString\nILSVRC2012_val_00000001,\n",
        "wrong_header.csv": "ImageId,Label\nILSVRC2012_val_00000001,n02123045\n",
        "empty.csv": "",
        "header_only.csv": "ImageId,PredictionString\n",
        "unknown_wnid.txt": "ILSVRC2012_val_00000001.JPEG n99999999\n",
        "out_of_range.txt": "ILSVRC2012_val_00000001.JPEG 1000\n",
    }
    out = {}
    for name, text in files.items():
        out[name] = folder.parent / "labels" / name
        out[name].parent.mkdir(exist_ok=True)
        out[name].write_text(text)
    out["binary.txt"] = folder.parent / "labels" / "binary.txt"
    out["binary.txt"].write_bytes(bytes(range(256)) * 4)
    return out


def write_bad_checkpoints(folder: Path) -> dict[str, Path]:
    """Checkpoints whose class table does not fit, and files that are not checkpoints at all."""
    import torch

    from robustbench_in.models import ModelSpec, create_model
    from robustbench_in.models.checkpoint import checkpoint_payload

    folder.mkdir(parents=True, exist_ok=True)
    base = create_model(ModelSpec(name="tiny_cnn"))
    head = torch.nn.Linear(base.module.classifier.in_features, 10)
    base.module.classifier = head
    wnids = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331", "n01498041",
             "n01514668", "n01514859", "n01518878"]
    out = {}
    for name, table in {"no_wnids": None, "five_wnids": wnids[:5], "duplicate_wnids": [wnids[0]] * 10,
                        "foreign_wnids": [f"n9999999{k}" for k in range(10)]}.items():
        payload = checkpoint_payload(base, num_classes=10)
        payload["num_classes"], payload["wnids"] = 10, table
        out[name] = folder / f"{name}.pt"
        torch.save(payload, out[name])
    out["html"] = folder / "html.pt"
    out["html"].write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>")
    out["pickle"] = folder / "pickle.pt"
    torch.save({"model": argparse.Namespace(a=1)}, out["pickle"])  # a zip-pickle holding a foreign object
    return out


def write_bad_results(folder: Path, good: Path) -> dict[str, Path]:
    """Sweep folders with one good results.csv (copied from ``good``) and one broken one each."""
    import shutil

    out = {}
    text = (good / "results.csv").read_text()
    for name, broken in {"garbage": bytes(range(256)) * 8, "truncated": text[: int(len(text) * 0.8)].encode(),
                         "empty": b""}.items():
        sweep = folder / name
        shutil.copytree(good, sweep / "good", dirs_exist_ok=True)
        (sweep / "bad").mkdir(parents=True, exist_ok=True)
        (sweep / "bad" / "results.csv").write_bytes(broken)
        out[name] = sweep
    return out


# ---------------------------------------------------------------------------------------------------- cases


@dataclass
class Case:
    name: str
    args: list[str]
    rc: int  # 0 or 2
    expect: str = ""  # a substring of stderr (rc 2) or stdout (rc 0)


#: Typos and bad values on the command line: (arguments, the error line must contain).
CONFIG_CASES = [
    (["data=imagenet_folder"], "data.root is not set"),
    (["data=imagenet_folder", "data.root=/does/not/exist"], "data.root=/does/not/exist does not exist"),
    (["model=resnet5000"], "unknown model 'resnet5000'"),
    (["model=efficientnet_lite5"], "did you mean efficientnet_lite2"),
    (["task=evl"], "unknown task 'evl'"),
    (["suite.corruptions=[gausian_noise]"], "did you mean gaussian_noise"),
    (["model=torchvision", "model.name=resnet5000"], "unknown torchvision model 'resnet5000'"),
    (["runtime.batchsize=3"], "did you mean runtime.batch_size"),
    (["runtime.precision=bf61"], "runtime.precision: Invalid value 'bf61'"),
    (["suite.severities=[0]"], "suite.severities: severity must be an integer 1-5"),
    (["task=report", "sweep_dir=/does/not/exist"], "sweep_dir /does/not/exist does not exist"),
]


def cases(root: Path) -> list[Case]:
    """Every hostile run: (name, CLI arguments, expected exit code, expected text)."""
    images = root / "bad_images"
    labels = write_label_files(root / "flat")
    ckpts = write_bad_checkpoints(root / "ckpt")
    out = lambda name: f"results_dir={root / 'runs' / name}"  # noqa: E731
    tiny = ["model=tiny_cnn", "suite=clean"]
    flat = ["data=imagenet_flat", f"data.root={root / 'flat'}"]
    ro = root / "read_only_file"
    ro.write_text("a file, not a folder")
    result = [
        Case("bad image folder", [*tiny, f"data.root={images}", "suite.corruptions=[fog,spatter]",
                                  "suite.severities=[1]", out("bad_images")], 0, "6 images skipped"),
        Case("flat labels ok", [*tiny, *flat, f"data.labels_file={labels['ok.txt']}", out("flat_ok")], 0, "results:"),
        *[Case(f"labels {name}", [*tiny, *flat, f"data.labels_file={labels[name]}", out("x")], 2, expect)
          for name, expect in [("duplicate.txt", "duplicate.txt:2"), ("empty_label.csv", "empty_label.csv:2"),
                               ("wrong_header.csv", "wrong_header.csv:1"), ("empty.csv", "holds no labels"),
                               ("header_only.csv", "holds no labels"), ("binary.txt", "binary.txt is not a text"),
                               ("unknown_wnid.txt", "unknown_wnid.txt:1"), ("out_of_range.txt", "out_of_range.txt:1")]],
        Case("max_images -1", [*tiny, "data.max_images=-1", out("x")], 2, "data.max_images=-1 is not a count"),
        Case("max_images 0", [*tiny, "data.max_images=0", out("x")], 2, "data.max_images=0 is not a count"),
        Case("max_pixels 0", [*tiny, "data.max_pixels=0", out("x")], 2, "data.max_pixels=0"),
        Case("device tpu", [*tiny, "runtime.device=tpu", out("x")], 2, "runtime.device=tpu"),
        Case("device cuda:7", [*tiny, "runtime.device=cuda:7", out("x")], 2, "runtime.device=cuda:7"),
        Case("results_dir under a file", [*tiny, f"results_dir={ro}/sub"], 2, "is not writable"),
        Case("results_dir in /proc", [*tiny, "results_dir=/proc/rbin_results"], 2, "is not writable"),
        *[Case(f"checkpoint {name}", ["model=checkpoint", f"model.weights_file={ckpts[name]}", "suite=clean",
                                      out("x")], 2, expect)
          for name, expect in [("no_wnids", "10 outputs but 1000 wnids"), ("five_wnids", "10 outputs but 5 wnids"),
                               ("duplicate_wnids", "repeats wnids"), ("foreign_wnids", "non-ImageNet wnids"),
                               ("html", "is not a readable checkpoint"), ("pickle", "is not a readable checkpoint")]],
        Case("torchvision weights html", ["model=torchvision", "model.name=resnet18",
                                          f"model.weights_file={ckpts['html']}", out("x")], 2, "not a readable"),
        *[Case(f"config {' '.join(args)}", [*args, out("x")], 2, expect) for args, expect in CONFIG_CASES],
        Case("launcher not installed", ["-m", "hydra/launcher=ray", *tiny, out("x")], 2,
             "pip install hydra-ray-launcher"),
    ]
    return result


def report_cases(root: Path) -> list[Case]:
    """The report over sweeps that hold one broken results.csv beside a good one (needs a finished run)."""
    good = root / "runs" / "flat_ok"
    if not (good / "results.csv").is_file():
        return [Case("report needs the flat run", [], -1)]
    sweeps = write_bad_results(root / "sweeps", good)
    found = [Case(f"report with {name} results.csv", ["task=report", f"sweep_dir={path}"], 0, "skipped")
             for name, path in sweeps.items()]
    only_bad = root / "sweeps" / "only_bad"
    (only_bad / "a").mkdir(parents=True, exist_ok=True)
    (only_bad / "a" / "results.csv").write_bytes(bytes(range(256)))
    found.append(Case("report with only a garbage results.csv", ["task=report", f"sweep_dir={only_bad}"], 2,
                      "results.csv"))
    return found


# --------------------------------------------------------------------------------------------------- runner


def run_case(case: Case, cwd: Path) -> tuple[Case, int, str, str]:
    """(case, rc, stdout, stderr) of one CLI run."""
    proc = subprocess.run(main_cmd(*case.args), capture_output=True, text=True, timeout=600, cwd=cwd)
    return case, proc.returncode, proc.stdout, proc.stderr


def verdict(case: Case, rc: int, stdout: str, stderr: str) -> str:
    """'' when the run kept its promise, else what went wrong (one line)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    if "Traceback" in stderr:
        return "traceback: " + (lines[-1] if lines else "")
    if rc != case.rc:
        return f"rc {rc}, expected {case.rc}: " + (lines[-1] if lines else stdout.strip().splitlines()[-1:])
    if rc == 2 and (len(lines) != 1 or not lines[0].startswith("error: ")):
        return f"{len(lines)} stderr lines: " + " | ".join(lines[:3])
    text = lines[0] if rc == 2 else stdout + stderr
    if case.expect and case.expect not in text:
        return f"missing {case.expect!r} in: " + (lines[0] if lines else stdout.strip()[-200:])
    return ""


def run_all(root: Path, jobs: int = 2) -> list[tuple[str, int, str]]:
    """Build the bad files under ``root``, run every case; (name, rc, problem or '') per case."""
    write_bad_images(root / "bad_images")
    results = []
    for batch in (cases(root), None):
        todo = batch if batch is not None else report_cases(root)
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            for case, rc, out, err in pool.map(lambda c: run_case(c, root), todo):
                results.append((case.name, rc, verdict(case, rc, out, err)))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="CLI runs at once")
    parser.add_argument("--keep", type=Path, help="build the files here and keep them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        results = run_all(root, args.jobs)
    width = max(len(name) for name, _, _ in results)
    for name, rc, problem in results:
        print(f"{name:<{width}}  rc {rc}  {'ok' if not problem else 'FAIL ' + problem}")
    failed = sum(bool(p) for _, _, p in results)
    print(f"{len(results) - failed} of {len(results)} hostile runs kept their promise")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
