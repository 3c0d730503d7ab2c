"""Generated 2D images and label maps for the demo, the tests and the CPU study (numpy and scipy only, no nnU-Net).

Three generators, one table (:data:`GENERATORS`), each ``make(num_images, size, seed) -> (images, labels)`` with
images (N, 1, size, size) float32 and labels (N, size, size) int64:

- ``discs``: a large disc (~15% of the image), a medium ellipse (~1.5%) and a dot (~0.3%), flat intensities under
  strong Gaussian noise. The dot is 11 pixels: at CPU budgets whether a network finds it depends on the seed.
- ``phantom``: an abdomen-like slice, the demo's data: air around a body of soft tissue with a smooth texture, a
  large organ with a lobed outline (~13%), a kidney-like ellipse at a random angle (~2.5%) and a round lesion
  inside the organ (~0.6%), rendered at 4x resolution and averaged (partial volume at every edge) under noise.
- ``many``: one large and five small classes (a stand-in for multi-class anatomy; :mod:`.nnunet.synthetic_many`).
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Dict, NamedTuple, Tuple

import numpy as np

DISCS_LABELS = {"background": 0, "large": 1, "medium": 2, "small": 3}
PHANTOM_LABELS = {"background": 0, "organ": 1, "kidney": 2, "lesion": 3}
MANY_LABELS = {"background": 0, "large": 1, "medium": 2, "square": 3, "disc": 4, "dot": 5, "bar": 6}
MANY_INTENSITY = np.array([0.0, 1.0, 1.6, 2.2, -1.0, -1.6, 2.8], np.float32)


def _flat_classes(num_images: int, size: int, seed: int, disc_radius: Tuple[float, float], draw_small: Callable,
                  intensity: np.ndarray, noise: float):
    """Images of flat-intensity classes under Gaussian noise: a large disc (label 1, radius ``disc_radius`` of the
    side), a medium ellipse (2), then ``draw_small(rng, lab, yy, xx, size)`` adds the small classes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.zeros((num_images, 1, size, size), np.float32)
    labels = np.zeros((num_images, size, size), np.int64)
    for n in range(num_images):
        lab = np.zeros((size, size), np.int64)
        cy, cx = rng.uniform(0.35, 0.65, 2) * size
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 < (size * rng.uniform(*disc_radius)) ** 2] = 1
        cy, cx = rng.uniform(0.15, 0.85, 2) * size
        a, b = size * rng.uniform(0.06, 0.09), size * rng.uniform(0.03, 0.05)
        lab[((yy - cy) / a) ** 2 + ((xx - cx) / b) ** 2 < 1] = 2
        draw_small(rng, lab, yy, xx, size)
        images[n, 0] = intensity[lab] + rng.normal(0, noise, (size, size)).astype(np.float32)
        labels[n] = lab
    return images, labels


def _dot(rng, lab, yy, xx, size, label):
    """A dot of about 11 pixels (radius sqrt((0.025 size)^2 + 1)) at a random position."""
    cy, cx = rng.uniform(0.1, 0.9, 2) * size
    lab[(yy - cy) ** 2 + (xx - cx) ** 2 < (size * 0.025) ** 2 + 1] = label


def make_discs(num_images: int, size: int = 64, seed: int = 0):
    """A large disc (~15% of the image), a medium ellipse (~1.5%) and a small dot (~0.3%), flat intensities 1.0,
    1.6 and 2.2 on a background of 0 under Gaussian noise (sd 0.6)."""
    return _flat_classes(num_images, size, seed, (0.2, 0.24), partial(_dot, label=3),
                         np.array([0.0, 1.0, 1.6, 2.2], np.float32), 0.6)


def _many_small(rng, lab, yy, xx, size):
    """A square (3), a disc (4), a dot (5) and a short bar (6)."""
    cy, cx = rng.uniform(0.1, 0.9, 2) * size
    half = size * 0.045
    lab[(np.abs(yy - cy) < half) & (np.abs(xx - cx) < half)] = 3
    cy, cx = rng.uniform(0.1, 0.9, 2) * size
    lab[(yy - cy) ** 2 + (xx - cx) ** 2 < (size * 0.05) ** 2] = 4
    _dot(rng, lab, yy, xx, size, label=5)
    cy, cx = rng.uniform(0.15, 0.85, 2) * size
    lab[(np.abs(yy - cy) < size * 0.02) & (np.abs(xx - cx) < size * 0.1)] = 6


def make_many_classes(num_images: int, size: int = 64, seed: int = 0, noise: float = 0.6):
    """One large disc (~12%), a medium ellipse (~1%) and four small structures (a square, a disc, a dot, a short
    bar; 0.3-0.8% each), each class with its own flat intensity under Gaussian noise, at random positions."""
    return _flat_classes(num_images, size, seed, (0.18, 0.22), _many_small, MANY_INTENSITY, noise)


# phantom intensities: air, body (soft tissue, label 0 too), organ, kidney, lesion
_AIR, _BODY, _ORGAN, _KIDNEY, _LESION = -1.5, 0.0, 1.0, 1.8, 2.6
_SUPERSAMPLE = 4


def _phantom_slice(rng: np.random.Generator, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """One phantom image and its labels: shapes drawn at 4x resolution, the image the block mean (partial
    volume), the label the class covering most of each block."""
    from scipy.ndimage import gaussian_filter

    fine = size * _SUPERSAMPLE
    yy, xx = (np.mgrid[0:fine, 0:fine].astype(np.float32) + 0.5) / _SUPERSAMPLE  # pixel units
    # body: an ellipse filling most of the field of view
    cy, cx = size * (0.5 + rng.uniform(-0.03, 0.03, 2))
    body = ((yy - cy) / (size * rng.uniform(0.40, 0.46))) ** 2 + ((xx - cx) / (size * rng.uniform(0.42, 0.47))) ** 2 < 1
    # organ: a lobed outline r(theta) = r0 (1 + a cos(2 theta + phi) + b cos(3 theta + psi)), off-centre
    oy, ox = cy + size * rng.uniform(-0.08, 0.05), cx + size * rng.uniform(-0.12, 0.02)
    r0 = size * rng.uniform(0.19, 0.22)
    theta = np.arctan2(yy - oy, xx - ox)
    outline = r0 * (1 + rng.uniform(0.08, 0.16) * np.cos(2 * theta + rng.uniform(0, 2 * np.pi))
                    + rng.uniform(0.03, 0.08) * np.cos(3 * theta + rng.uniform(0, 2 * np.pi)))
    organ = body & (np.hypot(yy - oy, xx - ox) < outline)
    # kidney: an ellipse at a random angle, on the side of the body away from the organ
    angle = rng.uniform(0, np.pi)
    ky, kx = cy + size * rng.uniform(-0.15, 0.15), cx + size * rng.uniform(0.2, 0.27)
    u = (yy - ky) * np.cos(angle) + (xx - kx) * np.sin(angle)
    v = -(yy - ky) * np.sin(angle) + (xx - kx) * np.cos(angle)
    kidney = body & ((u / (size * rng.uniform(0.10, 0.12))) ** 2 + (v / (size * rng.uniform(0.055, 0.065))) ** 2 < 1)
    # lesion: a disc inside the organ, its centre at least its radius + 1 pixel from the organ's outline
    radius = size * rng.uniform(0.055, 0.07)
    inner = organ & (np.hypot(yy - oy, xx - ox) < outline - radius - 1)
    candidates = np.flatnonzero(inner)
    pick = candidates[rng.integers(len(candidates))] if len(candidates) else int(np.argmax(organ))
    ly, lx = yy.flat[pick], xx.flat[pick]
    lesion = organ & (np.hypot(yy - ly, xx - lx) < radius)

    label_fine = np.zeros((fine, fine), np.int64)
    label_fine[organ] = 1
    label_fine[kidney] = 2
    label_fine[lesion] = 3
    value = np.where(body, _BODY, _AIR).astype(np.float32)
    value[organ], value[kidney], value[lesion] = _ORGAN, _KIDNEY, _LESION
    texture = gaussian_filter(rng.normal(0, 1, (size, size)), 2.0).astype(np.float32)
    texture *= 0.25 / max(float(texture.std()), 1e-6)
    blocks = lambda a: a.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE)  # noqa: E731
    image = blocks(value).mean((1, 3)) + np.where(blocks(body).mean((1, 3)) > 0.5, texture, 0)
    image += rng.normal(0, 0.35, (size, size)).astype(np.float32)
    counts = np.stack([blocks(label_fine == c).sum((1, 3)) for c in range(4)])
    return image.astype(np.float32), counts.argmax(0)


def make_phantom(num_images: int, size: int = 64, seed: int = 0):
    """Abdomen-like slices (see the module docstring): organ ~13%, kidney ~2.5%, lesion ~0.6% of the image."""
    rng = np.random.default_rng(seed)
    images = np.zeros((num_images, 1, size, size), np.float32)
    labels = np.zeros((num_images, size, size), np.int64)
    for n in range(num_images):
        images[n, 0], labels[n] = _phantom_slice(rng, size)
    return images, labels


class Generator(NamedTuple):
    make: Callable
    labels: Dict[str, int]
    description: str


GENERATORS: Dict[str, Generator] = {
    "discs": Generator(make_discs, DISCS_LABELS, "3 foreground classes of very different sizes"),
    "phantom": Generator(make_phantom, PHANTOM_LABELS,
                         "abdomen-like slices: an organ, a kidney and a lesion inside the organ"),
    "many": Generator(make_many_classes, MANY_LABELS, "one large and five small foreground classes"),
}
