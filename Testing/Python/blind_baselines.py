"""Image-blind baselines for the tests that say a model learns, and phantoms that defeat them.

A test that says "the model learns" must beat a predictor that never looks at the test
image, computed in the test on the same training and held-out cases and scored with the
same metric (tracker issue 17):

- segmentation: the atlas of the training masks -- on the test image's grid, a pixel is
  class ``c`` when more than half of the training masks give it class ``c`` (the majority
  atlas), or more than a lower fraction; the best of these thresholds is the baseline;
- landmarks: the mean of the training positions, per landmark, in LPS millimetres;
- DDPM pretraining: predicting zero noise (loss = the noise's mean square, about 1).

The atlases and the mean landmarks are written as prediction files (``<case>.nrrd``
label maps, ``<case>.mrk.json`` markups) and scored by the same ``evaluate_*`` function as
the model's predictions. :func:`required_dice` and :func:`required_mre` give the margin.

The generated phantoms put the anatomy at nearly the same place in every image, so an
atlas scores Dice ~0.85 and the mean landmarks MRE ~12 mm on them: they cannot tell a
model that reads the image from one that does not. :func:`shifted_phantoms` moves each
phantom's anatomy (image, label map and landmarks together) to a random place in a larger
canvas, which a model that looks at the image follows and an image-blind predictor cannot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from DiffusionSegLib.evaluation.landmarks import evaluate_landmarks
from DiffusionSegLib.evaluation.segmentation import evaluate_segmentations
from DiffusionSegLib.landmarks import Landmarks, read_landmarks, write_mrk_json


# ----------------------------------------------------------------------------- margins


def required_dice(atlas_dice: float) -> float:
    """The mean Dice a model must reach to count as learning: halfway from the atlas to a
    perfect score, ``(1 + atlas) / 2``. A fixed "+0.05" would be within the spread of a few
    training seeds; asking the model to remove half of the atlas's error scales with how
    easy the phantoms are (0.74 against an atlas of 0.48, 0.92 against one of 0.84)."""
    return (1.0 + atlas_dice) / 2


def required_mre(mean_mre_mm: float) -> float:
    """The MRE (mm) a model must stay under to count as learning: half the MRE of the
    mean training landmarks. A model that reads the image is within a pixel or two; one
    that is not does no better than the mean."""
    return 0.5 * mean_mre_mm


# ----------------------------------------------------------------------------- pretraining


def zero_noise_loss(shape: Sequence[int], seed: int = 0) -> float:
    """The DDPM loss of the image-blind noise predictor: the noise is drawn independently
    of the image, so without the noisy image the best guess is its mean, zero, and the
    loss is the noise's mean square -- 1 in expectation; here measured on one draw of
    ``shape`` (e.g. a batch, (N, C, H, W)) so the test compares against a number it made."""
    noise = np.random.default_rng(seed).standard_normal(tuple(shape))
    return float(np.mean(noise ** 2))


# ----------------------------------------------------------------------------- segmentation


def atlas_fractions(train_labels: Sequence[Path], reference: sitk.Image, n_classes: int) -> np.ndarray:
    """Per class, the fraction of ``train_labels`` that give each point of ``reference``'s grid that class.

    Args:
        train_labels: label map files (0 background, ``i + 1`` = class ``i``).
        reference: the test image; each training mask is resampled onto its grid in
            physical space (nearest neighbour; exact when the grids are the same).
        n_classes: number of foreground classes.
    Returns:
        (n_classes, H, W[, D in array order]) float64 in [0, 1].
    """
    votes = np.zeros((n_classes,) + sitk.GetArrayViewFromImage(reference).shape, np.float64)
    for path in train_labels:
        mask = sitk.Resample(sitk.ReadImage(str(path)), reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                             sitk.sitkUInt8)
        array = sitk.GetArrayViewFromImage(mask)
        for c in range(n_classes):
            votes[c] += array == c + 1
    return votes / len(train_labels)


def atlas_labelmap(fractions: np.ndarray, reference: sitk.Image, threshold: float = 0.5) -> sitk.Image:
    """The atlas label map: class ``c`` where its fraction exceeds ``threshold`` (the most
    frequent such class where several do; at 0.5 the classes, being disjoint, cannot
    tie), else background; uint8 with ``reference``'s geometry."""
    best = fractions.argmax(axis=0)
    atlas = np.where(fractions.max(axis=0) > threshold, best + 1, 0).astype(np.uint8)
    out = sitk.GetImageFromArray(atlas)
    out.CopyInformation(reference)
    return out


ATLAS_THRESHOLDS = (0.5, 0.4, 0.3, 0.2, 0.1)


def atlas_scores(labels_dir: Path, images_dir: Path, train: Sequence[str], test: Sequence[str],
                 classes: Sequence[str], out_dir: Path, thresholds: Sequence[float] = ATLAS_THRESHOLDS) -> dict:
    """The Dice of the best image-blind atlas of the ``train`` cases' masks on the ``test`` cases.

    For each threshold the atlas (:func:`atlas_labelmap`, the majority atlas at 0.5) is
    written as the prediction of every ``test`` case (``out_dir/t<threshold>/<case>.nrrd``)
    and scored against ``labels_dir`` with ``evaluate_segmentations``. When the anatomy
    moves from case to case no pixel is inside a structure in most training masks and the
    majority atlas is empty (Dice 0), a straw man; a lower threshold gives a blurred atlas
    that overlaps more. Returns the ``summary`` (``mean_dice``, per-class Dice, ...) of the
    threshold with the highest mean Dice, chosen on the test labels themselves -- the
    strongest atlas, so a model that beats it beats every one of them -- with
    ``"threshold"`` added.
    """
    train_labels = [labels_dir / f"{case}.nrrd" for case in train]
    atlases = {}
    for case in test:
        reference = sitk.ReadImage(str(images_dir / f"{case}.nrrd"))
        atlases[case] = (atlas_fractions(train_labels, reference, len(classes)), reference)
    best = None
    for threshold in thresholds:
        folder = out_dir / f"t{threshold}"
        folder.mkdir(parents=True)
        for case, (fractions, reference) in atlases.items():
            sitk.WriteImage(atlas_labelmap(fractions, reference, threshold), str(folder / f"{case}.nrrd"))
        summary = evaluate_segmentations(folder, labels_dir, classes)["summary"]
        if best is None or summary["mean_dice"] > best["mean_dice"]:
            best = {**summary, "threshold": threshold}
    return best


# ----------------------------------------------------------------------------- landmarks


def mean_landmarks(paths: Sequence[Path]) -> Landmarks:
    """Per-landmark mean position (LPS mm) over the markups files ``paths``, ignoring
    landmarks that are not placed; names in the order of the first file."""
    marks = [read_landmarks(p) for p in paths]
    names = marks[0].names
    points = np.stack([m.reordered(names).points for m in marks])  # (cases, N, 3)
    return Landmarks(names, np.nanmean(points, axis=0))


def mean_landmark_scores(landmarks_dir: Path, train: Sequence[str], test: Sequence[str], out_dir: Path) -> dict:
    """Write the mean of the ``train`` cases' landmarks as the prediction of every ``test``
    case (``out_dir/<case>.mrk.json``) and score it against ``landmarks_dir`` with
    ``evaluate_landmarks``; returns its ``summary["overall"]`` (``mre_mm``, ...)."""
    out_dir.mkdir(parents=True)
    mean = mean_landmarks([landmarks_dir / f"{case}.mrk.json" for case in train])
    for case in test:
        write_mrk_json(mean, out_dir / f"{case}.mrk.json")
    return evaluate_landmarks(out_dir, landmarks_dir)["summary"]["overall"]


# ----------------------------------------------------------------------------- varied phantoms


def shifted_phantoms(src: Path, dst: Path, canvas: Sequence[int], seed: int = 0) -> Path:
    """Copy a 2D generated dataset with each case's anatomy moved to a random place.

    Every case of ``src`` (``images/``, ``labels/``, ``landmarks/`` as written by
    ``generate_sample_dataset``, images of size (H, W)) is placed in a ``canvas`` (H', W')
    >= (H, W) at a random integer offset, uniform in ``[0, H' - H] x [0, W' - W]``: the
    image is padded with its own edge values (the body and the air continue), the label
    map with background, and the landmarks move by the same offset. The canvas has the
    source's spacing and is centred on the source's field of view, so a case placed at
    the middle offset keeps its physical coordinates.

    Returns ``dst`` with the same three folders.
    """
    rng = np.random.default_rng(seed)
    for sub in ("images", "labels", "landmarks"):
        (dst / sub).mkdir(parents=True)
    for image_path in sorted((src / "images").glob("case_*.nrrd")):
        case = image_path.name[: -len(".nrrd")]
        image = sitk.ReadImage(str(image_path))
        label = sitk.ReadImage(str(src / "labels" / f"{case}.nrrd"))
        pixels, mask = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(label)
        room = np.array(canvas) - np.array(pixels.shape)
        if (room < 0).any():
            raise ValueError(f"canvas {tuple(canvas)} is smaller than the image {pixels.shape}")
        offset = np.array([rng.integers(0, r + 1) for r in room])  # (row, col)
        pad = [(int(o), int(r - o)) for o, r in zip(offset, room)]
        spacing = np.array(image.GetSpacing())  # (x, y) = (col, row)
        origin = np.array(image.GetOrigin()) - room[::-1] / 2 * spacing
        for array, mode, folder, path in ((pixels, "edge", "images", image_path),
                                          (mask, "constant", "labels", None)):
            out = sitk.GetImageFromArray(np.pad(array, pad, mode=mode))
            out.SetSpacing(image.GetSpacing())
            out.SetOrigin(origin.tolist())
            sitk.WriteImage(out, str(dst / folder / f"{case}.nrrd"), useCompression=True)
        marks = read_landmarks(src / "landmarks" / f"{case}.mrk.json")
        move = np.zeros(3)
        move[:2] = (offset[::-1] - room[::-1] / 2) * spacing  # index shift minus the canvas's centring, in mm
        write_mrk_json(Landmarks(marks.names, marks.points + move), dst / "landmarks" / f"{case}.mrk.json")
    return dst


def shifted_sample_dataset(root: Path, n_cases: int = 8, seed: int = 3) -> Path:
    """``n_cases`` chest phantoms 24 px across at 11.2 mm/px, moved to random places in a
    32 x 32 canvas (shifted_phantoms): the data of the tests that train on phantoms."""
    from DiffusionSegLib.sample_data import generate_sample_dataset

    generate_sample_dataset(root / "centred", dims=2, n_cases=n_cases, size=(24, 24), seed=seed, spacing=[11.2, 11.2])
    return shifted_phantoms(root / "centred", root / "data", (32, 32), seed=seed)
