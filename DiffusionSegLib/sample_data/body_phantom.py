"""A whole-body CT phantom whose axial cross-section changes with height (for body-part regression).

The body is defined in physical LPS millimetres, feet at z = 0 and the top of the
head at z = :data:`BODY_HEIGHT_MM`, and every voxel is evaluated at its physical
position. A volume is therefore a window onto the same body, and its direction
matrix (e.g. stored head first, or in RAS order) changes the array layout but not the
anatomy: exactly the case a regressor that trusted array order would get wrong.

Cross-sections from the feet up (h = z / height): two legs that approach and merge
into the pelvis (with hip bones), the abdomen (liver on the right, growing then
shrinking), the thorax (lungs that widen, then close at the apices), the neck, and the
head (a skull ring around brain). A spine runs through the trunk.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

BODY_HEIGHT_MM = 1000.0
AIR, FAT, SOFT, LIVER, LUNG, BONE, BRAIN = -1000.0, -100.0, 40.0, 150.0, -850.0, 700.0, 0.0


def _bump(h: float, centre: float, width: float) -> float:
    """A smooth 0..1 bump around ``centre`` of half-width ``width`` (cosine shaped)."""
    t = abs(h - centre) / width
    return 0.5 * (1 + np.cos(np.pi * t)) if t < 1 else 0.0


def _ramp(h: float, start: float, end: float) -> float:
    """0 below ``start``, 1 above ``end``, smooth in between."""
    t = np.clip((h - start) / (end - start), 0.0, 1.0)
    return float(t * t * (3 - 2 * t))


def _ellipse(x, y, cx, cy, ax, ay):
    return ((x - cx) / max(ax, 1e-3)) ** 2 + ((y - cy) / max(ay, 1e-3)) ** 2 <= 1


def _slice(x: np.ndarray, y: np.ndarray, h: float, scale: float) -> np.ndarray:
    """HU of an axial section at relative height ``h`` (0 feet, 1 head); ``x``, ``y`` in mm (LPS: +x left, +y back)."""
    hu = np.full(x.shape, AIR)
    legs = 1.0 - _ramp(h, 0.38, 0.46)  # 1: two separate legs; 0: one trunk
    trunk_w = scale * (150 + 30 * _bump(h, 0.5, 0.15) + 20 * _bump(h, 0.68, 0.12)) * _ramp(h, 0.35, 0.42)
    trunk_w *= 1.0 - 0.55 * _ramp(h, 0.8, 0.85)  # the neck
    trunk_d = scale * (100 + 10 * _bump(h, 0.55, 0.2)) * (1.0 - 0.2 * _ramp(h, 0.8, 0.85))
    if h < 0.46:
        leg_r = scale * (35 + 45 * h / 0.46)
        sep = scale * (40 + 50 * h / 0.46)
        for side in (-1, 1):
            leg = _ellipse(x, y, side * sep, 0, leg_r, leg_r)
            hu = np.where(leg, SOFT, hu)
            hu = np.where(_ellipse(x, y, side * sep, 0, 0.25 * leg_r, 0.25 * leg_r) & leg, BONE, hu)  # femur
    if legs < 1.0 and h < 0.86:
        body = _ellipse(x, y, 0, 0, trunk_w, trunk_d)
        hu = np.where(body, FAT, hu)
        hu = np.where(_ellipse(x, y, 0, 0, 0.9 * trunk_w, 0.88 * trunk_d), SOFT, hu)
        hips = _bump(h, 0.45, 0.06)
        for side in (-1, 1):
            hu = np.where(_ellipse(x, y, side * 0.6 * trunk_w, 0.1 * trunk_d, 30 * hips * scale, 20 * hips * scale),
                          BONE, hu)
        liver = _bump(h, 0.6, 0.07)
        hu = np.where(_ellipse(x, y, -0.35 * trunk_w, -0.1 * trunk_d, 0.45 * trunk_w * liver, 0.6 * trunk_d * liver),
                      LIVER, hu)
        lungs = _bump(h, 0.72, 0.08)
        for side in (-1, 1):
            hu = np.where(_ellipse(x, y, side * 0.42 * trunk_w, -0.05 * trunk_d, 0.38 * trunk_w * lungs,
                                   0.65 * trunk_d * lungs), LUNG, hu)
        spine_r = scale * 14 * (1 - 0.4 * _ramp(h, 0.8, 0.85))
        hu = np.where(_ellipse(x, y, 0, 0.65 * trunk_d, spine_r, spine_r), BONE, hu)
    head = _ramp(h, 0.85, 0.87) * (1 - _ramp(h, 0.985, 1.0))
    if head > 0:
        r = scale * 90 * np.sqrt(max(0.0, 1 - ((h - 0.93) / 0.07) ** 2)) * head
        hu = np.where(_ellipse(x, y, 0, 0, r, 1.15 * r), BONE, hu)
        hu = np.where(_ellipse(x, y, 0, 0, 0.85 * r, 1.15 * 0.85 * r), BRAIN, hu)
    return hu


def body_ct_volume(rng: np.random.Generator, z_range_mm: tuple[float, float], size_xy: tuple[int, int] = (48, 48),
                   spacing_mm: Sequence[float] = (10.0, 10.0, 10.0),
                   direction: Sequence[float] = (1, 0, 0, 0, 1, 0, 0, 0, 1), noise_hu: float = 20.0) -> sitk.Image:
    """A CT volume (float32 HU) of the phantom body between heights ``z_range_mm`` (LPS z, 0 = feet).

    Args:
        rng: draws the body's size (+-8 %), a small in-plane shift and the noise.
        z_range_mm: (low, high) heights covered; the number of slices follows from the z spacing.
        size_xy: in-plane voxels (x, y).
        spacing_mm: (x, y, z) voxel size.
        direction: row-major 3x3 direction cosines (axis-aligned: a signed permutation),
            e.g. ``(1,0,0, 0,1,0, 0,0,-1)`` for a volume stored head first.

    Returns:
        a 3D ``SimpleITK.Image`` whose voxels lie where the body is, in physical space.
    """
    low, high = z_range_mm
    depth = round((high - low) / spacing_mm[2]) + 1
    size = (int(size_xy[0]), int(size_xy[1]), depth)
    matrix = np.asarray(direction, float).reshape(3, 3)
    spacing = np.asarray(spacing_mm, float)
    # Choose the origin so that the volume's extent is centred in x, y and spans [low, high] in z.
    corner_to_corner = matrix @ ((np.array(size) - 1) * spacing)
    centre = np.array([rng.normal(0, 5), rng.normal(0, 5), (low + high) / 2])
    origin = centre - corner_to_corner / 2
    image = sitk.Image(size, sitk.sitkFloat32)
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(origin.tolist())
    image.SetDirection(matrix.ravel().tolist())

    index = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), axis=-1)  # (X, Y, Z, 3)
    points = origin + (index * spacing) @ matrix.T  # (X, Y, Z, 3) physical LPS mm
    scale = rng.uniform(0.92, 1.08)
    hu = np.empty(size, np.float32)
    # Axis-aligned: the physical z of a voxel is fixed along one array axis; evaluate per height.
    heights = points[..., 2]
    for value in np.unique(np.round(heights, 6)):
        where = np.isclose(heights, value)
        hu[where] = _slice(points[..., 0][where], points[..., 1][where], value / BODY_HEIGHT_MM, scale)
    hu += rng.normal(0, noise_hu, size).astype(np.float32)
    array = np.transpose(hu, (2, 1, 0))  # (X, Y, Z) -> numpy (Z, Y, X)
    result = sitk.GetImageFromArray(np.ascontiguousarray(array))
    result.CopyInformation(image)
    return result
