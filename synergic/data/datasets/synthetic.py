"""A generated, dermoscopy-like two-class data set: no download, same pixels everywhere.

``synthetic_lesions`` mimics what makes the paper's ISIC 2016 task hard (Zhang et al., 2018,
Sec. 1): *intra-class variation* and *inter-class similarity*. Each image is a skin-toned
background with texture, illumination and nuisances (hairs, the dark rim of a dermoscope) around
one pigmented lesion. The two classes differ in the dermatologists' ABCD features, but only as
overlapping distributions:

- every image draws one latent "atypia" ``z`` in [0, 1] from a class-dependent Beta distribution
  (benign mostly low, malignant mostly high, with a wide overlap);
- each ABCD feature gets its own noisy copy of ``z``: **A**symmetry (odd Fourier harmonics of the
  outline and an off-centre dark blotch), **B**order irregularity (high harmonics, an abrupt
  pigment edge), **C**olour variegation (patches of black, blue-grey, red and white regression
  mixed in), **D**iameter (the lesion's radius);
- everything else (skin tone, lesion brown, elongation, position, hairs, vignette) is drawn
  independently of the class.

So some benign lesions look atypical and some melanomas look regular: a small CNN learns the task
well above chance but not perfectly.

Every image is a pure function of ``(seed, split, index, image_size, malignant_fraction)``: it is
drawn from its own ``numpy.random.default_rng([seed, split_id, index])`` in float64 and rounded to
uint8, so the same arguments give the same pixels on any machine, and different splits never
share images. Images are generated on first access and kept, so building the data set is instant.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch.utils.data import Dataset

from synergic.errors import SynergicError, did_you_mean

CLASSES = ("benign", "malignant")
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}

# Beta(a, b) of the latent atypia per class: means 0.32 and 0.68, overlapping on purpose.
_ATYPIA_BETA = {0: (2.2, 4.6), 1: (4.6, 2.2)}
# How far each ABCD feature strays from the shared atypia (the less, the easier the task).
_FEATURE_NOISE = 0.16

# Dermoscopy colours, RGB in [0, 1].
_SKIN_LIGHT = np.array([0.94, 0.80, 0.72])
_SKIN_TAN = np.array([0.78, 0.58, 0.46])
_BROWN_LIGHT = np.array([0.72, 0.52, 0.38])
_BROWN_DARK = np.array([0.40, 0.25, 0.16])
_ATYPICAL_COLOURS = np.array(
    [
        [0.13, 0.09, 0.08],  # black
        [0.42, 0.47, 0.58],  # blue-grey veil
        [0.72, 0.32, 0.32],  # red
        [0.90, 0.86, 0.86],  # white regression
    ]
)


def synthetic_lesions(
    root: object = None,
    *,
    split: str,
    num_train: int = 200,
    num_val: int = 0,
    num_test: int = 100,
    image_size: int = 64,
    seed: int = 0,
    malignant_fraction: float = 0.3,
) -> SyntheticLesions:
    """One split of the generated skin-lesion data set.

    Args:
        root: ignored (nothing is read or written); accepted so that every data set factory takes
            the same arguments.
        split: ``"train"``, ``"val"`` or ``"test"``.
        num_train, num_val, num_test: images per split; a split with 0 images does not exist.
        image_size: side of the square images in pixels.
        seed: picks a different, equally distributed data set.
        malignant_fraction: share of class 1 (``malignant``); any prefix of the split holds it to
            within one image.

    Raises:
        NoSuchSplit: the split has 0 images (``num_val=0`` by default).
    """
    from synergic.data import NoSuchSplit
    from synergic.data.datasets.base import check_split_name

    check_split_name(split, "synthetic_lesions")
    counts = {"train": num_train, "val": num_val, "test": num_test}
    for name, count in counts.items():
        if not isinstance(count, int) or count < 0:
            raise SynergicError(
                f"synthetic_lesions: num_{name} must be an integer >= 0, got {count!r}"
            )
    if counts[split] == 0:
        raise NoSuchSplit(
            f"synthetic_lesions has no '{split}' split because num_{split}=0; "
            f"set num_{split} to a positive number to get one"
        )
    return SyntheticLesions(
        split=split,
        num_images=counts[split],
        image_size=image_size,
        seed=seed,
        malignant_fraction=malignant_fraction,
    )


class SyntheticLesions(Dataset):
    """Generated dermoscopy-like images; ``dataset[i]`` is ``(uint8 tensor [3, S, S], label)``.

    Prefer :func:`synthetic_lesions`, which also knows which splits exist.

    Attributes:
        classes: ``["benign", "malignant"]``; label 1 is the positive class.
        ids: ``"synthetic_<split>_<index:05d>"`` per image.
        labels: the class index per image.
    """

    def __init__(
        self,
        *,
        split: str,
        num_images: int,
        image_size: int = 64,
        seed: int = 0,
        malignant_fraction: float = 0.3,
    ) -> None:
        if split not in SPLIT_IDS:
            raise SynergicError(
                f"SyntheticLesions: unknown split {split!r}{did_you_mean(split, SPLIT_IDS)}; "
                f"use one of {', '.join(SPLIT_IDS)}"
            )
        if not isinstance(num_images, int) or num_images < 0:
            raise SynergicError(
                f"SyntheticLesions: num_images must be an integer >= 0, got {num_images!r}"
            )
        if not isinstance(image_size, int) or image_size < 8:
            raise SynergicError(
                f"SyntheticLesions: image_size must be an integer >= 8, got {image_size!r}"
            )
        if not isinstance(seed, int) or seed < 0:
            raise SynergicError(f"SyntheticLesions: seed must be an integer >= 0, got {seed!r}")
        if not 0.0 <= malignant_fraction <= 1.0:
            raise SynergicError(
                "SyntheticLesions: malignant_fraction must be in [0, 1], "
                f"got {malignant_fraction!r}"
            )
        self.split = split
        self.image_size = image_size
        self.seed = seed
        self.malignant_fraction = float(malignant_fraction)
        self.classes = list(CLASSES)
        self.ids = [f"synthetic_{split}_{i:05d}" for i in range(num_images)]
        # Evenly spread instead of coin flips (label i is 1 when floor(i * f + u) steps up): each
        # index's label does not depend on how many images the split has, and every prefix holds
        # the requested balance to within one image, so even a 4-image split has both classes.
        offset = np.random.default_rng([seed, SPLIT_IDS[split], 1 << 20]).random()
        steps = np.floor(
            np.arange(num_images + 1, dtype=np.float64) * self.malignant_fraction + offset
        )
        self.labels = [int(step) for step in np.diff(steps)]
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index %= len(self)
        image = self._cache.get(index)
        if image is None:
            rng = np.random.default_rng([self.seed, SPLIT_IDS[self.split], index])
            pixels = render_lesion(rng, self.labels[index], self.image_size)
            image = torch.from_numpy(pixels.transpose(2, 0, 1).copy())
            self._cache[index] = image
        return image, self.labels[index]

    def __repr__(self) -> str:
        return (
            f"SyntheticLesions(split={self.split!r}, num_images={len(self)}, "
            f"image_size={self.image_size}, seed={self.seed}, "
            f"malignant_fraction={self.malignant_fraction})"
        )


def render_lesion(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """Draw one lesion image of class ``label`` as uint8 ``[size, size, 3]`` from ``rng``.

    The order of the draws is part of the data set's definition: changing it changes every image.
    Per-pixel work uses only arithmetic, square roots and small matrix products in float64 (no
    per-pixel transcendental functions): fast, and far from the last-bit differences between math
    libraries that could flip a rounded pixel.
    """
    # Pixel centres in units of the image's half-side, so shapes do not depend on the resolution.
    axis = (np.arange(size, dtype=np.float64) + 0.5) / size * 2.0 - 1.0
    y, x = np.meshgrid(axis, axis, indexing="ij")
    pixel = 2.0 / size

    atypia = rng.beta(*_ATYPIA_BETA[int(label)])
    asym, border, colour, diameter = np.clip(atypia + rng.normal(0.0, _FEATURE_NOISE, 4), 0.0, 1.0)

    # --- skin: tone, blotchy texture, grain, uneven lighting -------------------------------------
    skin = _SKIN_LIGHT + rng.random() * (_SKIN_TAN - _SKIN_LIGHT) + rng.normal(0.0, 0.02, 3)
    light_dir = rng.normal(0.0, 1.0, 2)
    lighting = 1.0 + 0.07 * (light_dir[0] * x + light_dir[1] * y) / (math.hypot(*light_dir) + 1e-9)
    shading = (
        lighting
        + 0.035 * _value_noise(rng, size, 3)
        + 0.02 * _value_noise(rng, size, max(4, size // 4))
    )
    image = skin[:, None, None] * shading[None]

    # --- lesion outline: radius as a function of angle ------------------------------------------
    centre = rng.normal(0.0, 0.07, 2)
    dx, dy = x - centre[0], y - centre[1]
    rho = np.sqrt(dx * dx + dy * dy)
    radius = max(0.26 + 0.36 * diameter + rng.normal(0.0, 0.05), 4.0 * pixel)
    # r(angle) / radius - 1 as a Fourier series, summed by one inverse FFT onto a fine angle grid.
    spectrum = np.zeros(_ANGLE_STEPS // 2 + 1, dtype=np.complex128)
    spectrum[2] = rng.uniform(0.0, 0.22) * np.exp(
        1j * rng.uniform(0, 2 * math.pi)
    )  # mirror-symmetric
    odd = asym * rng.uniform(0.5, 1.0, 2) * np.array([0.16, 0.10])  # k=1 and k=3 break symmetry
    spectrum[[1, 3]] = odd * np.exp(1j * rng.uniform(0, 2 * math.pi, 2))
    harmonics = np.arange(4, 21)  # 1/k amplitudes: a ragged outline, not a regular star
    wiggle = (0.01 + 0.22 * border**1.5) * rng.normal(0.0, 1.0, harmonics.size) / harmonics
    spectrum[harmonics] = wiggle * np.exp(1j * rng.uniform(0, 2 * math.pi, harmonics.size))
    shape = np.fft.irfft(spectrum * (_ANGLE_STEPS / 2), n=_ANGLE_STEPS)
    outline = radius * (1.0 + _lookup_by_angle(shape, dx, dy))
    # Benign naevi fade out; melanomas tend to stop abruptly.
    softness = radius * (0.08 - 0.065 * border) + 0.4 * pixel
    inside = _soft_step((outline - rho) / softness)
    depth = np.clip(1.0 - rho / np.maximum(outline, 1e-6), 0.0, 1.0)

    # --- lesion colour: brown with a darker centre, atypical colours mixed in -------------------
    brown = _BROWN_LIGHT + rng.random() * (_BROWN_DARK - _BROWN_LIGHT)
    darker = brown * rng.uniform(0.55, 0.8)
    mottle = 1.0 + 0.10 * _value_noise(rng, size, 6)
    lesion = (
        brown[:, None, None] + (darker - brown)[:, None, None] * np.sqrt(depth)[None]
    ) * mottle[None]
    # Off-centre dark blotch: colour asymmetry, grows with A.
    blotch_angle = rng.uniform(0, 2 * math.pi)
    blotch_at = centre + radius * 0.5 * asym * np.array(
        [math.cos(blotch_angle), math.sin(blotch_angle)]
    )
    blotch = _bump(((x - blotch_at[0]) ** 2 + (y - blotch_at[1]) ** 2) / (0.8 * radius) ** 2)
    lesion = lesion * (1.0 - 0.5 * asym * blotch)[None]
    # Variegation: each atypical colour covers the patches where a smooth field passes a threshold.
    for swatch in _ATYPICAL_COLOURS:
        field = _value_noise(rng, size, 5)
        share = rng.uniform(0.3, 1.0) * colour**1.5  # how much of the lesion this colour may take
        patch = _soft_step((field - (1.6 - 2.4 * share)) / 0.2) * share
        lesion = lesion + (swatch[:, None, None] - lesion) * (0.9 * patch)[None]
    # Dots and globules, which both classes have.
    dots = _soft_step((_value_noise(rng, size, 14) - 1.8) / 0.12)
    lesion = lesion * (1.0 - 0.4 * dots)[None]
    image = image + (lesion - image) * inside[None]

    # --- nuisances independent of the class -----------------------------------------------------
    if rng.random() < 0.3:
        for _ in range(rng.integers(1, 4)):
            image = image * (1.0 - 0.6 * _hair(rng, x, y, pixel))[None]
    if rng.random() < 0.35:  # the dark round rim of a dermoscope's field of view
        rim = rng.uniform(1.05, 1.35)
        image = image * _soft_step((rim - np.sqrt(x * x + y * y)) / 0.04)[None]
    grain = (rng.random((size, size)) - 0.5) * 0.035  # sensor grain, the same in all channels
    image = image + grain[None]
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8).transpose(1, 2, 0)


def _soft_step(values: np.ndarray) -> np.ndarray:
    """A logistic-like step from 0 to 1 (same slope at 0), as a clamped cubic: cheap and exact."""
    t = np.clip(values * (1.0 / 6.0) + 0.5, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _bump(distance_squared: np.ndarray) -> np.ndarray:
    """A smooth Gaussian-like bump: 1 at distance 0, 0 from distance 1 on."""
    t = np.clip(1.0 - distance_squared, 0.0, 1.0)
    return t * t * t


# The outline is sampled at _ANGLE_STEPS equal angles, then re-tabulated over a "diamond angle"
# d in [0, 4] (the quadrant plus a fraction, from arithmetic alone) so that pixels need no arctan2.
_ANGLE_STEPS = 1024
_TABLE_SIZE = 1024


def _diamond_table() -> tuple[np.ndarray, np.ndarray]:
    diamond = np.arange(_TABLE_SIZE + 1) * (4.0 / _TABLE_SIZE)
    quadrant = np.floor(diamond).clip(0, 3)
    part = diamond - quadrant
    angle = quadrant * (math.pi / 2) + np.arctan2(part, 1.0 - part)
    position = angle / (2 * math.pi) * _ANGLE_STEPS
    index = np.minimum(position.astype(np.intp), _ANGLE_STEPS - 1)
    return index, position - index


_DIAMOND_INDEX, _DIAMOND_FRACTION = _diamond_table()


def _lookup_by_angle(shape: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """``shape`` (sampled at equal angles from +x, counter-clockwise) at each pixel's angle."""
    following = np.roll(shape, -1)
    table = (
        shape[_DIAMOND_INDEX] * (1.0 - _DIAMOND_FRACTION)
        + following[_DIAMOND_INDEX] * _DIAMOND_FRACTION
    )
    ax, ay = np.abs(dx), np.abs(dy)
    total = np.maximum(ax + ay, 1e-12)
    diamond = np.where(
        dy >= 0,
        np.where(dx >= 0, ay / total, 1.0 + ax / total),
        np.where(dx < 0, 2.0 + ay / total, 3.0 + ax / total),
    )
    position = diamond * (_TABLE_SIZE / 4.0)
    index = np.minimum(position.astype(np.intp), _TABLE_SIZE - 1)
    fraction = position - index
    return table[index] * (1.0 - fraction) + table[index + 1] * fraction


def _value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth random blobs about ``size / cells`` pixels across, unit variance at every pixel."""
    spread = _spread_matrix(size, cells)
    nodes = rng.standard_normal((spread.shape[1], spread.shape[1]))
    return spread @ nodes @ spread.T


@functools.lru_cache(maxsize=64)
def _spread_matrix(size: int, cells: int) -> np.ndarray:
    """Gaussian weights from a coarse grid of random nodes to the pixels, rows of unit L2 norm."""
    pixels = (np.arange(size) + 0.5) / size * cells
    nodes = (
        np.arange(-2, cells + 2) + 0.5
    )  # two nodes of margin so the edges are as smooth as the middle
    weights = np.exp(-0.5 * ((pixels[:, None] - nodes[None]) / 0.7) ** 2)
    weights /= np.linalg.norm(weights, axis=1, keepdims=True)
    weights.flags.writeable = False
    return weights


def _hair(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, pixel: float) -> np.ndarray:
    """Opacity of one thin, gently curved dark hair crossing the image."""
    origin = rng.uniform(-0.8, 0.8, 2)
    angle = rng.uniform(0, math.pi)
    cos, sin = math.cos(angle), math.sin(angle)
    along = (x - origin[0]) * cos + (y - origin[1]) * sin
    across = -(x - origin[0]) * sin + (y - origin[1]) * cos
    across = across - rng.uniform(-0.4, 0.4) * along * along
    width = max(rng.uniform(0.012, 0.024), 0.9 * pixel)
    length = rng.uniform(0.6, 1.6)
    return _bump((across / width) ** 2) * _soft_step((length - np.abs(along)) / 0.05)
