"""The original ImageNet-C generator's frost and elastic_transform (MK224, spec §3.9 and §3.13) in numpy.

imagecorruptions(-imaug) implements these two differently (frost: textures rescaled 1.1x and frost6 drawn too;
elastic_transform: a different algorithm with other parameters), and we follow the original generator, so the
fidelity benchmark compares ours with these instead. Randomness comes from numpy's global generator as in the
original (seed it first); ``elastic_with_draws`` takes the draws explicitly so tests can feed it ours.
Written for 224x224 uint8 HWC images, the only size the original handles.
"""

from __future__ import annotations

import importlib.resources

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates

# (alpha, sigma, eps) per severity: MK224 writes them as multiples of 244 (spec §3.13)
ELASTIC = {1: (488, 170.8, 24.4), 2: (488, 19.52, 48.8), 3: (12.2, 2.44, 4.88), 4: (17.08, 2.44, 4.88),
           5: (29.28, 2.44, 4.88)}
# (image weight, frost weight) per severity (spec §3.9)
FROST = {1: (1.0, 0.4), 2: (0.8, 0.6), 3: (0.7, 0.7), 4: (0.65, 0.7), 5: (0.6, 0.75)}
FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")  # frost6 is never drawn


def elastic_with_draws(image: np.ndarray, severity: int, jitter: np.ndarray, noise_x: np.ndarray,
                       noise_y: np.ndarray) -> np.ndarray:
    """MK224's elastic_transform of a 224x224 uint8 image given its draws: jitter (3, 2) in U(-eps, eps), the two
    U(-1, 1) fields (224, 224). Returns float64 in [0, 255] (OpenCV >= 5 float warp coordinates)."""
    alpha, sigma, _ = ELASTIC[severity]
    image = image.astype(np.float32) / 255.0
    points = np.float32([[186, 186], [186, 38], [38, 38]])
    affine = cv2.getAffineTransform(points, points + jitter.astype(np.float32))
    image = cv2.warpAffine(image, affine, (224, 224), borderMode=cv2.BORDER_REFLECT_101)
    dx = (gaussian_filter(noise_x, sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
    dy = (gaussian_filter(noise_y, sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
    rows, cols = np.meshgrid(np.arange(224), np.arange(224), indexing="ij")
    coords = [rows + dy, cols + dx]
    out = np.stack([map_coordinates(image[..., c], coords, order=1, mode="reflect") for c in range(3)], axis=-1)
    return np.clip(out, 0, 1) * 255


def elastic_transform(image: np.ndarray, severity: int) -> np.ndarray:
    """MK224's elastic_transform with its own draw order from numpy's global generator."""
    eps = ELASTIC[severity][2]
    jitter = np.random.uniform(-eps, eps, size=(3, 2))
    noise_x = np.random.uniform(-1, 1, size=(224, 224))
    noise_y = np.random.uniform(-1, 1, size=(224, 224))
    return elastic_with_draws(image, severity, jitter, noise_x, noise_y)


_TEXTURES: list[np.ndarray] = []


def frost(image: np.ndarray, severity: int) -> np.ndarray:
    """MK224's frost: randint(5) texture, crop at randint(0, H_f - 224), randint(0, W_f - 224), a·x + f·crop."""
    if not _TEXTURES:
        folder = importlib.resources.files("imagecorruptions") / "frost"
        for name in FROST_FILES:
            bgr = cv2.imread(str(folder / name))
            _TEXTURES.append(bgr[..., ::-1].astype(np.float64))
    a, f = FROST[severity]
    tex = _TEXTURES[np.random.randint(5)]
    r0 = np.random.randint(0, tex.shape[0] - 224)
    c0 = np.random.randint(0, tex.shape[1] - 224)
    return np.clip(a * image.astype(np.float64) + f * tex[r0:r0 + 224, c0:c0 + 224], 0, 255)


CORRUPTIONS = {"elastic_transform": elastic_transform, "frost": frost}
