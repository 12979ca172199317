"""The embedded default dataset: real photographs that ship inside already-required pip packages.

So ``python main.py`` runs on a fresh machine with no dataset and no downloads. Each photo gets the
ImageNet label(s) this project assigns to what it shows; several labels are given where ImageNet itself
has near-duplicate classes (tabby / tiger cat / Egyptian cat), and any of them counts as correct.
It is a smoke test of the pipeline, not a benchmark: use ``data=imagenet_folder data.root=...`` for that.
"""

from __future__ import annotations

from pathlib import Path

from robustbench_in.data.classes import imagenet_classes
from robustbench_in.data.datasets import DatasetError, ImageItem, ImageList, register_dataset

# (package, path inside the package's data folder, accepted ImageNet wnids — the first is the label)
EMBEDDED_PHOTOS = (
    ("skimage", "chelsea.png", ("n02123045", "n02123159", "n02124075")),  # tabby cat: tabby, tiger cat, Egyptian cat
    ("skimage", "coffee.png", ("n07920052", "n07930864", "n03063599")),  # espresso, cup, coffee mug
    ("skimage", "rocket.jpg", ("n04266014", "n03773504", "n04008634")),  # space shuttle, missile, projectile
    ("skimage", "motorcycle_left.png", ("n03785016", "n03791053")),  # moped, motor scooter
    ("skimage", "camera.png", ("n04485082",)),  # grayscale photographer: tripod
    ("skimage", "clock_motion.png", ("n04548280", "n02708093")),  # wall clock, analog clock
    ("matplotlib", "grace_hopper.jpg", ("n03763968", "n04591157", "n04350905")),  # military uniform, Windsor tie, suit
)


def _data_dir(package: str) -> Path:
    if package == "skimage":
        import skimage

        return Path(skimage.__file__).parent / "data"
    if package == "matplotlib":
        import matplotlib

        return Path(matplotlib.get_data_path()) / "sample_data"
    raise ValueError(package)


@register_dataset("embedded")
def embedded(**_) -> ImageList:
    """A handful of real photos from scikit-image and matplotlib, labelled by this project."""
    table = imagenet_classes()
    items, missing = [], []
    for package, name, wnids in EMBEDDED_PHOTOS:
        try:
            path = _data_dir(package) / name
        except ImportError:
            missing.append(f"{package}:{name}")
            continue
        if not path.is_file():
            missing.append(f"{package}:{name}")
            continue
        labels = [table.label(w) for w in wnids]
        items.append(ImageItem(path=path, label=labels[0], key=f"{package}/{name}", alt_labels=tuple(labels[1:])))
    if not items:
        raise DatasetError("the embedded photos were not found: reinstall scikit-image and matplotlib "
                           "(pip install -e .), or pass data=imagenet_folder data.root=/path/to/imagenet/val")
    notes = [f"embedded photo not found: {m}" for m in missing]
    return ImageList(name="embedded", items=items, root="<embedded>",
                     notes=notes)
