"""Synthetic phantoms: a chest radiograph (2D) and an abdominal MRI-like volume (3D).

Each call draws a new random anatomy from ``rng`` (shape, size, position, contrast and
noise all vary), so a model has to learn the structures rather than memorise one
picture. Arrays are numpy in SimpleITK order: 2D ``(H, W)`` = (row, col), 3D
``(D, H, W)`` = (slice, row, col). With an identity direction matrix, columns run
toward the patient's left (+x in LPS), so the patient's right lung is on the image's
left as in a PA radiograph, and slices run toward the head (+z).

Landmarks are returned in continuous pixel index coordinates in the same order as the
array axes ((row, col) or (slice, row, col)); every landmark except the carina is a pixel
of its structure's label, found as the extreme pixel of that label along an anatomical
direction (topmost lung pixel = apex, lowest-lateral = costophrenic angle, ...).
"""

from __future__ import annotations

import numpy as np

CHEST_CLASSES = ["right_lung", "left_lung", "heart"]  # label values 1, 2, 3
CHEST_COLORS = [(0.5, 0.68, 0.9), (0.9, 0.8, 0.4), (0.85, 0.3, 0.3)]
CHEST_LANDMARKS = ["right_lung_apex", "left_lung_apex", "right_costophrenic_angle",
                   "left_costophrenic_angle", "heart_apex", "carina"]
VOLUME_CLASSES = ["right_kidney", "left_kidney"]  # label values 1, 2
VOLUME_COLORS = [(0.7, 0.45, 0.3), (0.55, 0.35, 0.6)]
VOLUME_LANDMARKS = ["right_kidney_upper_pole", "right_kidney_lower_pole",
                    "left_kidney_upper_pole", "left_kidney_lower_pole"]


def chest_phantom(rng: np.random.Generator, size: tuple[int, int] = (256, 256)):
    """A PA chest radiograph phantom.

    Returns:
        image: (H, W) float32, about 0..1, bright = attenuating (bone, heart), dark = air.
        labelmap: (H, W) uint8; 0 background, 1 right_lung, 2 left_lung, 3 heart (the heart
            is drawn over the lungs, as in the JSRT/SCR masks that keep them disjoint).
        landmarks: {name: (row, col)} float pixel coordinates, names CHEST_LANDMARKS.
    """
    h, w = int(size[0]), int(size[1])
    v, u = _grid((h, w))  # v: down (rows), u: right (cols), both 0..1 at pixel centres
    cx = 0.5 + rng.normal(0, 0.015)
    s = rng.uniform(0.9, 1.05)  # patient size

    # Thorax: a rounded box whose top leaves the image (shoulders and neck above).
    bx, by = rng.uniform(0.40, 0.46) * s, 0.66
    body = np.clip(1 - np.abs((u - cx) / bx) ** 2.6 - np.abs((v - 0.62) / by) ** 2.6, 0, None)
    body_mask = body > 0
    atten = 0.9 * np.sqrt(body)  # thicker in the middle of the chest

    lungs, apex_u = [], []
    for side in (-1, 1):  # -1: right lung (image left), +1: left lung (image right)
        a_u = cx + side * rng.uniform(0.12, 0.16) * s
        apex_v = rng.uniform(0.09, 0.15)
        base_v = rng.uniform(0.70, 0.80)
        w_lat = rng.uniform(0.19, 0.23) * s
        w_med = rng.uniform(0.05, 0.07) * s * (0.75 if side > 0 else 1.0)  # heart notch on the left
        dome = rng.uniform(0.05, 0.10)
        lungs.append(_lung_mask(u, v, side, a_u, apex_v, base_v, w_lat, w_med, dome) & body_mask)
        apex_u.append(a_u)
    lung_any = lungs[0] | lungs[1]
    atten = atten - 0.65 * _blur(lung_any.astype(np.float32), 0.006 * w) * np.sqrt(body)

    # Heart: an ellipse whose long axis points down and to the patient's left.
    hc = (cx + rng.uniform(0.04, 0.08) * s, rng.uniform(0.60, 0.66))  # (u, v)
    ha, hb = rng.uniform(0.14, 0.17) * s, rng.uniform(0.09, 0.11) * s
    theta = np.deg2rad(rng.uniform(20, 38))
    axis = np.array([np.cos(theta), np.sin(theta)])  # (du, dv)
    du, dv = u - hc[0], v - hc[1]
    along, across = du * axis[0] + dv * axis[1], -du * axis[1] + dv * axis[0]
    heart = (along / ha) ** 2 + (across / hb) ** 2 <= 1.0
    atten = atten + 0.4 * _blur(heart.astype(np.float32), 0.004 * w)

    # Spine and trachea in the midline, ribs and clavicles over the lungs.
    spine = (np.abs(u - cx) < 0.035 * s) & body_mask
    vertebrae = 0.75 + 0.25 * (np.cos(2 * np.pi * v / rng.uniform(0.055, 0.07)) > -0.6)
    atten = atten + 0.3 * _blur((spine * vertebrae).astype(np.float32), 0.002 * w)
    carina = (rng.uniform(0.27, 0.33), cx + rng.normal(0, 0.005))  # (v, u)
    airway = (np.abs(u - carina[1]) < 0.018) & (v < carina[0])
    for side in (-1, 1):  # main bronchi, 45-60 degrees from the midline
        ang = np.deg2rad(rng.uniform(30, 45))
        t = (v - carina[0]) * np.cos(ang) + side * (u - carina[1]) * np.sin(ang)
        d = np.abs(-(v - carina[0]) * np.sin(ang) + side * (u - carina[1]) * np.cos(ang))
        airway |= (t > 0) & (t < 0.09) & (d < 0.013)
    atten = atten - 0.25 * _blur(airway.astype(np.float32), 0.003 * w)
    ribs = np.zeros_like(u, dtype=bool)
    spacing, phase = rng.uniform(0.065, 0.08), rng.uniform(0, 0.02)
    for k in range(9):
        for side in (-1, 1):  # posterior ribs: arcs rising towards the spine
            lat = side * (u - cx)
            centre = 0.1 + phase + k * spacing + 1.6 * (lat - 0.14) ** 2 - 0.03
            ribs |= (np.abs(v - centre) < 0.007 + 0.01 * lat) & (lat > 0.045) & (lat < 0.92 * bx) & body_mask
    atten = atten + 0.15 * _blur(ribs.astype(np.float32), 0.002 * w)
    for side in (-1, 1):
        lat = side * (u - cx)
        clav = np.abs(v - (0.1 + rng.uniform(-0.01, 0.01) + 0.12 * (lat - 0.15) ** 2)) < 0.012
        atten = atten + 0.25 * (clav & (lat > 0.04) & (lat < 0.33) & body_mask)

    # Film response (saturating), smooth exposure gradient, blur and quantum noise.
    atten = _blur(atten, 0.002 * w)
    image = 1 - np.exp(-rng.uniform(1.4, 1.9) * np.clip(atten, 0, None)) + rng.uniform(0.02, 0.06)
    image = image * (1 + _smooth_field(rng, u, v, 0.12))
    image = np.clip(image, 0, None) ** rng.uniform(0.8, 1.2)
    image = image + rng.normal(0, rng.uniform(0.01, 0.03), image.shape)
    image = np.clip(image, 0, 1).astype(np.float32)

    labelmap = np.zeros((h, w), np.uint8)
    labelmap[lungs[0]] = 1
    labelmap[lungs[1]] = 2
    labelmap[heart] = 3  # drawn last: the heart shadow covers the lungs

    coords = (v, u)
    landmarks = {
        "right_lung_apex": _extreme(labelmap == 1, coords, (-1.0, 0.0)),
        "left_lung_apex": _extreme(labelmap == 2, coords, (-1.0, 0.0)),
        "right_costophrenic_angle": _extreme(labelmap == 1, coords, (1.0, -0.6)),
        "left_costophrenic_angle": _extreme(labelmap == 2, coords, (1.0, 0.6)),
        "heart_apex": _extreme(labelmap == 3, coords, (axis[1], axis[0])),
        "carina": (carina[0] * h - 0.5, carina[1] * w - 0.5),
    }
    return image, labelmap, landmarks


def volume_phantom(rng: np.random.Generator, size: tuple[int, int, int] = (32, 64, 64)):
    """An abdominal MRI-like phantom: body, subcutaneous fat, liver, spine, two kidneys.

    Returns:
        image: (D, H, W) float32, about 0..1 (T2-like: kidneys bright).
        labelmap: (D, H, W) uint8; 0 background, 1 right_kidney, 2 left_kidney.
        landmarks: {name: (slice, row, col)} float index coordinates, names VOLUME_LANDMARKS
            (upper pole = towards higher slice index = superior).
    """
    shape = tuple(int(n) for n in size)
    z, y, x = _grid(shape)
    cx = 0.5 + rng.normal(0, 0.02)
    ax, ay = rng.uniform(0.40, 0.46), rng.uniform(0.30, 0.36)
    r_body = ((x - cx) / ax) ** 2 + ((y - 0.5) / ay) ** 2
    body = r_body <= 1
    image = np.where(body, 0.3, 0.02)
    image = np.where(body & (r_body > 0.8), 0.65, image)  # subcutaneous fat
    liver = ((x - (cx - 0.16)) / 0.2) ** 2 + ((y - 0.45) / 0.2) ** 2 + ((z - 0.85) / 0.35) ** 2 <= 1
    image = np.where(liver & body, 0.42, image)
    spine = ((x - cx) / 0.06) ** 2 + ((y - 0.72) / 0.06) ** 2 <= 1
    image = np.where(spine, 0.15, image)

    labelmap = np.zeros(shape, np.uint8)
    poles = {}
    min_semi = [1.2 / n for n in shape]  # keep kidneys at least ~2 voxels thick in tiny volumes
    for label, side, name in ((1, -1, "right_kidney"), (2, 1, "left_kidney")):
        centre = np.array([rng.uniform(0.42, 0.52) + (0.05 if side > 0 else 0.0),  # z: the left kidney sits higher
                           rng.uniform(0.62, 0.68), cx + side * rng.uniform(0.19, 0.24)])
        semi = np.maximum([rng.uniform(0.24, 0.3), rng.uniform(0.06, 0.08), rng.uniform(0.06, 0.08)], min_semi)
        tilt = np.deg2rad(rng.uniform(8, 20))  # upper pole tilted towards the spine
        long_axis = np.array([np.cos(tilt), 0.0, -side * np.sin(tilt)])  # (dz, dy, dx)
        rel = [z - centre[0], y - centre[1], x - centre[2]]
        along = sum(a * r for a, r in zip(long_axis, rel))
        perp_x = side * np.sin(tilt) * rel[0] + np.cos(tilt) * rel[2]  # the other axis in the z-x plane
        q = (along / semi[0]) ** 2 + (rel[1] / semi[1]) ** 2 + (perp_x / semi[2]) ** 2
        kidney = q <= 1
        labelmap[kidney] = label
        image = np.where(kidney, np.where(q < 0.35, 0.6, 0.85), image)  # medulla darker than cortex
        coords = (z, y, x)
        poles[f"{name}_upper_pole"] = _extreme(kidney, coords, tuple(long_axis))
        poles[f"{name}_lower_pole"] = _extreme(kidney, coords, tuple(-long_axis))

    image = _blur(image.astype(np.float32), 0.6)
    image = image * (1 + _smooth_field(rng, x, y, 0.2)) * rng.uniform(0.85, 1.15)
    image = np.abs(image + rng.normal(0, rng.uniform(0.01, 0.03), shape))  # magnitude: Rician-like floor
    landmarks = {n: poles[n] for n in VOLUME_LANDMARKS}
    return np.clip(image, 0, 1).astype(np.float32), labelmap, landmarks


# ----------------------------------------------------------------------------- helpers


def _grid(shape):
    """Normalised coordinates (0..1 at pixel centres), one array per axis, array order."""
    axes = [(np.arange(n, dtype=np.float64) + 0.5) / n for n in shape]
    return np.meshgrid(*axes, indexing="ij")


def _lung_mask(u, v, side, apex_u, apex_v, base_v, w_lat, w_med, dome):
    """A lung field: rounded apex, convex lateral wall, diaphragm dome rising medially,
    so the costophrenic angle is the lowest, most lateral corner."""
    t = np.clip((v - apex_v) / (base_v - apex_v), 0, None)
    f = np.minimum(t, 1.0) ** 0.4  # quick widening below the apex: a rounded dome
    lat_edge, med_edge = apex_u + side * w_lat * f, apex_u - side * w_med * f
    inside = (v >= apex_v) & (side * (u - lat_edge) <= 0) & (side * (u - med_edge) >= 0)
    # s: 0 at the lateral corner, 1 at the medial end of the base
    s = np.clip(side * (apex_u + side * w_lat - u) / (w_lat + w_med), 0, 1)
    bottom = base_v - dome * np.where(s < 0.6, np.sin(0.5 * np.pi * s / 0.6) ** 0.7, 1 - 0.4 * (s - 0.6) / 0.4)
    return inside & (v <= bottom)


def _extreme(mask, coords, direction):
    """Index coordinates (array order) of the mask pixel furthest along ``direction``
    (given in normalised coordinates); ties resolve to the first pixel in array order."""
    if not mask.any():
        raise ValueError("phantom structure vanished; use a larger size")
    score = sum(float(d) * c for d, c in zip(direction, coords))
    flat = np.where(mask, score, -np.inf).argmax()
    return tuple(float(i) for i in np.unravel_index(flat, mask.shape))


def _blur(a, sigma):
    """Separable Gaussian blur (sigma in pixels), reflecting at the borders; numpy only."""
    if sigma < 0.3:
        return a
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    out = np.asarray(a, dtype=np.float32)
    for axis in range(out.ndim):
        if out.shape[axis] < 2:
            continue
        pad = [(0, 0)] * out.ndim
        pad[axis] = (r, r)
        p = np.pad(out, pad, mode="reflect" if out.shape[axis] > r else "edge")
        acc = np.zeros_like(out)
        for i, wgt in enumerate(k):
            acc += wgt * np.take(p, np.arange(i, i + out.shape[axis]), axis=axis)
        out = acc
    return out


def _smooth_field(rng, a, b, amplitude):
    """A smooth random field (a few low-frequency waves) of about +-amplitude."""
    field = np.zeros_like(a)
    for _ in range(3):
        fa, fb, ph = rng.uniform(0.3, 1.2), rng.uniform(0.3, 1.2), rng.uniform(0, 2 * np.pi)
        field += np.cos(2 * np.pi * (fa * a + fb * b) + ph)
    return amplitude / 3 * field
