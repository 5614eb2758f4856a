"""Procedural colour shapes: an offline image-classification set that a small ResNet cannot
solve in a few epochs.

Why it exists: CIFAR-10 and ImageNet cannot be downloaded here, and scikit-learn's digits
are solved by any convnet in one or two epochs, which leaves nothing to compare between
activations. This set is generated from a seed by the procedure below, so every machine
gets the same images, and its difficulty comes from nuisance factors that a classifier has
to learn to ignore, not from label noise (every label is exact).

Procedure (all random draws from one ``torch.Generator`` seeded with ``seed``), per image
of ``S x S`` pixels with coordinates in [-1, 1]:

1. **Background**: a random colour, a linear colour gradient in a random direction, and a
   sinusoidal grating (random orientation, frequency 2..8 cycles per image, amplitude
   0..0.25, random colour) - texture that contains edges but no shape.
2. **Distractors**: 0 to ``max_distractors`` small shapes (radius 0.12..0.22) of random
   classes, random colours and rotations, drawn first. They are a form of clutter: they carry
   features of other classes.
3. **Object**: one large shape (radius 0.36..0.62) of the label's class at a random position
   (kept inside the image), random rotation and a random colour independent of the
   background (so the contrast ranges from strong to faint), with a random stripe texture
   of 0..30 % modulation. Its soft mask is returned: it is the ground truth for
   localisation (Grad-CAM).
4. **Noise**: Gaussian pixel noise with standard deviation ``noise``, then clipping to [0, 1]
   and quantisation to uint8.

**Segmentation** (``return_segmentation=True``; :func:`load_shapes_segmentation`): the
generator knows every shape it paints, so it also returns a per-pixel class map (int64,
``(n, S, S)``): 0 for the background, ``1 + c`` where a shape of class ``c`` covers the pixel.
A pixel belongs to a shape when that shape's soft mask is at least 0.5 there (the pixel's
centre is inside the shape, up to the anti-aliasing), and each shape overwrites the ones
painted before it, in the painting order above (distractors, then the object), as it does in
the image. The map uses no random draw, so the images are the same with or without it.

The ten classes are shapes given by signed-distance functions in the object's own frame:
disk, ring, square, frame (hollow square), triangle, plus, star, bar, L-shape and a pair of
disks. Why it is hard: the label is invariant to colour, position, rotation and scale, so
the network has to learn shape; three pairs differ only by fine structure that is a few
pixels wide at 16 or 32 pixels (disk/ring, square/frame, bar/pair); distractors of other
classes and textured backgrounds add features that are not the label's; and faint
objects exist. A pre-activation ResNet-8 learns it steadily over tens of epochs instead of
saturating in two (see notebook 05 for the measured curves).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .tensors import ImageTensorDataset, SegmentationTensorDataset

__all__ = ["SHAPE_CLASSES", "SHAPES_PRESETS", "make_shapes", "load_shapes", "load_shapes_segmentation",
           "SEGMENTATION_CLASSES"]

#: Difficulty presets for :func:`load_shapes`. ``hard`` is :func:`make_shapes`'s defaults (any rotation,
#: two possible distractors, strong background texture); ``quick`` is the book's CPU scale: objects turn by
#: at most 30 degrees, are larger, have no distractors and a calmer background, so that a ResNet-8 learns
#: visibly within a few epochs on 2,000 images (and still does not saturate).
SHAPES_PRESETS: dict[str, dict] = {
    "hard": {},
    "quick": {"rotation": 30.0, "object_radius": (0.5, 0.8), "max_distractors": 0, "grating": 0.1, "noise": 0.03},
}

#: Class names, in label order.
SHAPE_CLASSES = ("disk", "ring", "square", "frame", "triangle", "plus", "star", "bar", "L-shape", "pair")

#: Pixel classes of the segmentation maps, in index order: the background, then the shapes.
SEGMENTATION_CLASSES = ("background", *SHAPE_CLASSES)


def _box(u: Tensor, v: Tensor, a: float, b: float, cu: float = 0.0, cv: float = 0.0) -> Tensor:
    """Signed distance (approximately; exact outside the corners) to an axis-aligned box."""
    return torch.maximum((u - cu).abs() - a, (v - cv).abs() - b)


def _sdf(cls: int, u: Tensor, v: Tensor) -> Tensor:
    """Signed distance of shape ``cls`` (negative inside) in the unit frame (shape radius ~0.8)."""
    r = torch.sqrt(u * u + v * v)
    if cls == 0:  # disk
        return r - 0.8
    if cls == 1:  # ring
        return (r - 0.62).abs() - 0.2
    if cls == 2:  # square
        return _box(u, v, 0.62, 0.62)
    if cls == 3:  # frame
        return torch.maximum(_box(u, v, 0.7, 0.7), -_box(u, v, 0.38, 0.38))
    if cls == 4:  # equilateral triangle, inradius 0.42
        d = None
        for i in range(3):
            a = math.pi / 2 + 2 * math.pi * i / 3
            h = -(u * math.cos(a) + v * math.sin(a)) - 0.42
            d = h if d is None else torch.maximum(d, h)
        return d
    if cls == 5:  # plus
        return torch.minimum(_box(u, v, 0.8, 0.22), _box(u, v, 0.22, 0.8))
    if cls == 6:  # five-pointed star (radial profile; distance scaled to about unit slope)
        phi = torch.atan2(v, u)
        return (r - (0.52 + 0.3 * torch.cos(5 * phi))) * 0.8
    if cls == 7:  # bar
        return _box(u, v, 0.85, 0.24)
    if cls == 8:  # L-shape
        return torch.minimum(_box(u, v, 0.2, 0.75, -0.45, 0.0), _box(u, v, 0.65, 0.2, 0.0, -0.55))
    if cls == 9:  # pair of disks
        return torch.minimum(torch.sqrt((u - 0.45) ** 2 + v * v) - 0.34, torch.sqrt((u + 0.45) ** 2 + v * v) - 0.34)
    raise ValueError(f"class {cls} out of range 0..9")


def _shape_masks(classes: Tensor, centre: Tensor, radius: Tensor, angle: Tensor, size: int) -> Tensor:
    """Soft (anti-aliased) masks (n, S, S) in [0, 1] of shapes with the given classes and poses."""
    n = len(classes)
    g = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    dx = xx[None] - centre[:, 0, None, None]
    dy = yy[None] - centre[:, 1, None, None]
    c, s = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    rad = (radius / 0.8)[:, None, None]  # the unit frame's shapes have radius ~0.8
    u = (c * dx + s * dy) / rad
    v = (-s * dx + c * dy) / rad
    out = torch.empty(n, size, size)
    pixel = (2.0 / size) / rad  # one pixel in unit-frame units, per image
    for k in range(len(SHAPE_CLASSES)):
        idx = (classes == k).nonzero().flatten()
        if len(idx):
            d = _sdf(k, u[idx], v[idx])
            out[idx] = torch.sigmoid(-d / (0.5 * pixel[idx]))
    return out


def _uniform(gen: torch.Generator, shape, lo: float, hi: float) -> Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen)


def make_shapes(n: int, image_size: int = 32, seed: int = 0, max_distractors: int = 2, noise: float = 0.05,
                grating: float = 0.2, contrast: tuple[float, float] = (0.2, 0.6),
                object_radius: tuple[float, float] = (0.36, 0.62), rotation: float = 180.0, return_masks: bool = False,
                return_segmentation: bool = False) -> tuple[Tensor, ...]:
    """Generate ``n`` images of the procedural shapes set (see the module docstring).

    Args:
        n: number of images (labels are balanced: ``i % 10`` before a seeded shuffle).
        image_size: side S in pixels (>= 8; 16 and 32 are the book's sizes).
        seed: the seed of every random draw; the same arguments always give the same tensors.
        max_distractors: at most this many small shapes of random classes per image (0 disables).
        noise: standard deviation of the Gaussian pixel noise (on the [0, 1] scale).
        grating: largest amplitude of the background grating.
        contrast: range of the object's mean-brightness difference from the background's mean.
        object_radius: range of the object's radius (half the image side is 1).
        rotation: the object turns by a uniform angle in [-rotation, rotation] degrees (180: any angle).
        return_masks: also return the object's soft mask (n, S, S) in [0, 1].
        return_segmentation: also return the per-pixel class map (n, S, S): 0 background, 1 + class
            of the shape on top (see the module docstring); the images do not depend on this flag.

    Returns:
        ``(images, labels)``, then ``masks`` if ``return_masks``, then ``segmentation`` if
        ``return_segmentation``: uint8 (n, 3, S, S), int64 (n,), float32 (n, S, S), int64 (n, S, S).
    """
    if n < 1 or image_size < 8:
        raise ValueError(f"n={n}, image_size={image_size}: need n >= 1 and image_size >= 8")
    if max_distractors < 0 or noise < 0 or grating < 0:
        raise ValueError(f"max_distractors={max_distractors}, noise={noise}, grating={grating}: must be >= 0")
    if not 0 < object_radius[0] <= object_radius[1] < 1:
        raise ValueError(f"object_radius={object_radius}: need 0 < low <= high < 1")
    if not 0 <= contrast[0] <= contrast[1] <= 1:
        raise ValueError(f"contrast={contrast}: need 0 <= low <= high <= 1")
    gen = torch.Generator().manual_seed(int(seed))
    S = image_size
    labels = torch.arange(n) % len(SHAPE_CLASSES)
    labels = labels[torch.randperm(n, generator=gen)]
    g = (torch.arange(S, dtype=torch.float32) + 0.5) / S * 2 - 1
    yy, xx = torch.meshgrid(g, g, indexing="ij")

    # 1. background: colour + gradient + grating
    base = _uniform(gen, (n, 3, 1, 1), 0.15, 0.85)
    theta = _uniform(gen, (n, 1, 1), 0, 2 * math.pi)
    ramp = torch.cos(theta) * xx + torch.sin(theta) * yy  # (n, S, S) in about [-1.4, 1.4]
    grad_col = _uniform(gen, (n, 3, 1, 1), -0.15, 0.15)
    phi = _uniform(gen, (n, 1, 1), 0, 2 * math.pi)
    freq = _uniform(gen, (n, 1, 1), 2.0, 8.0) * math.pi
    phase = _uniform(gen, (n, 1, 1), 0, 2 * math.pi)
    wave = torch.sin(freq * (torch.cos(phi) * xx + torch.sin(phi) * yy) + phase)
    grat_col = _uniform(gen, (n, 3, 1, 1), -1, 1) * _uniform(gen, (n, 1, 1, 1), 0.0, grating)
    img = base + grad_col * ramp[:, None] + grat_col * wave[:, None]
    seg = torch.zeros(n, S, S, dtype=torch.int64)  # per-pixel class map: no random draws

    # 2. distractors: small shapes of random classes
    for _ in range(max_distractors):
        present = torch.rand(n, generator=gen) < 0.6
        cls = torch.randint(0, len(SHAPE_CLASSES), (n,), generator=gen)
        radius = _uniform(gen, (n,), 0.12, 0.22)
        centre = _uniform(gen, (n, 2), -0.8, 0.8)
        angle = _uniform(gen, (n,), 0, 2 * math.pi)
        colour = _uniform(gen, (n, 3, 1, 1), 0, 1)
        m = _shape_masks(cls, centre, radius, angle, S)[:, None] * present[:, None, None, None]
        img = img * (1 - m) + colour * m
        seg = torch.where(m[:, 0] >= 0.5, 1 + cls[:, None, None], seg)

    # 3. the object: large shape of the label's class, with a stripe texture
    radius = _uniform(gen, (n,), object_radius[0], object_radius[1])
    centre = (_uniform(gen, (n, 2), -1, 1)) * (1 - radius[:, None] * 1.05).clamp(min=0.0)
    angle = _uniform(gen, (n,), -1, 1) * math.radians(rotation)
    mask = _shape_masks(labels, centre, radius, angle, S)
    # colour: the background's mean shifted by a contrast of random sign and size, plus a tint,
    # so the object is always visible but faint objects exist
    sign = torch.where(torch.rand(n, 1, 1, 1, generator=gen) < 0.5, -1.0, 1.0)
    shift = sign * _uniform(gen, (n, 1, 1, 1), contrast[0], contrast[1])
    colour = (base.mean(1, keepdim=True) + shift + _uniform(gen, (n, 3, 1, 1), -0.2, 0.2))
    colour = torch.where((colour < 0) | (colour > 1), base.mean(1, keepdim=True) - shift, colour).clamp(0, 1)
    s_ang = _uniform(gen, (n, 1, 1), 0, 2 * math.pi)
    stripes = torch.sin(_uniform(gen, (n, 1, 1), 4, 12) * math.pi * (torch.cos(s_ang) * xx + torch.sin(s_ang) * yy))
    texture = 1 + _uniform(gen, (n, 1, 1), 0, 0.3) * stripes
    obj = (colour * texture[:, None]).clamp(0, 1)
    img = img * (1 - mask[:, None]) + obj * mask[:, None]
    seg = torch.where(mask >= 0.5, 1 + labels[:, None, None], seg)

    # 4. pixel noise, clip, quantise
    img = img + noise * torch.randn(img.shape, generator=gen)
    images = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    return (images, labels) + ((mask,) if return_masks else ()) + ((seg,) if return_segmentation else ())


def load_shapes(n_train: int = 5000, n_test: int = 1000, image_size: int = 32, seed: int = 0,
                preset: str = "hard", **kwargs) -> tuple[ImageTensorDataset, ImageTensorDataset]:
    """Train and test splits of the procedural shapes set, as batch-indexable datasets of
    (float images (3, S, S) in [0, 1], labels); the test split uses the seed ``seed + 1_000_003``
    so the two never share an image draw. ``preset`` picks a difficulty from :data:`SHAPES_PRESETS`;
    ``kwargs`` (passed to :func:`make_shapes`) override it."""
    if preset not in SHAPES_PRESETS:
        raise ValueError(f"preset={preset!r}; allowed: {', '.join(SHAPES_PRESETS)}")
    kwargs = {**SHAPES_PRESETS[preset], **kwargs}
    tr = make_shapes(n_train, image_size, seed, **kwargs)
    te = make_shapes(n_test, image_size, seed + 1_000_003, **kwargs)
    return ImageTensorDataset(tr[0], tr[1]), ImageTensorDataset(te[0], te[1])


def load_shapes_segmentation(n_train: int = 3000, n_test: int = 500, image_size: int = 32, seed: int = 0,
                             preset: str = "quick", **kwargs) -> tuple[SegmentationTensorDataset, SegmentationTensorDataset]:
    """Train and test splits of the shapes set for semantic segmentation: batch-indexable datasets of
    (float images (3, S, S) in [0, 1], int64 class maps (S, S)) with the 11 classes of
    :data:`SEGMENTATION_CLASSES` (0 background, 1 + shape class). The images are exactly those of
    :func:`load_shapes` with the same arguments (test seed ``seed + 1_000_003``); note that the default
    ``preset`` here is ``quick`` (one object per image, no distractors), :func:`load_shapes`' is ``hard``."""
    if preset not in SHAPES_PRESETS:
        raise ValueError(f"preset={preset!r}; allowed: {', '.join(SHAPES_PRESETS)}")
    kwargs = {**SHAPES_PRESETS[preset], **kwargs}
    tr = make_shapes(n_train, image_size, seed, return_segmentation=True, **kwargs)
    te = make_shapes(n_test, image_size, seed + 1_000_003, return_segmentation=True, **kwargs)
    return SegmentationTensorDataset(tr[0], tr[2]), SegmentationTensorDataset(te[0], te[2])
