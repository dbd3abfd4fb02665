"""Reading segmentation labels onto their image's grid.

A label is a Slicer ``.seg.nrrd`` (named, coloured segments, possibly in several
layers, possibly overlapping, possibly cropped to their content) or a label map
(``.nrrd``, ``.nii.gz``, ``.nii``, ``.mha``, ``.png``, ...) whose voxel value ``i + 1``
means ``classes[i]`` and 0 background. Either way the result is one uint8 label map
on the reference image's grid, the convention the whole pipeline uses.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import UserError
from ..project import DEFAULT_COLORS
from ..vocabulary import LABEL_PICTURE_SUFFIXES, SEGMENTATION_FILE_SUFFIX, SEGMENTATION_LABEL_SUFFIXES
from .grid import Grid, GridMismatch, offset_on, place
from .names import match_class, segment_names

log = logging.getLogger(__name__)

Color = tuple[float, float, float]

#: Label-map suffixes whose files carry no geometry: only their size must match the image's.
PICTURE_SUFFIXES = LABEL_PICTURE_SUFFIXES
#: Label maps: every segmentation label suffix but Slicer's own .seg.nrrd (vocabulary.py).
LABELMAP_SUFFIXES = tuple(s for s in SEGMENTATION_LABEL_SUFFIXES if s != SEGMENTATION_FILE_SUFFIX)
_LOSSY = (".jpg", ".jpeg")


@dataclass
class LabelRead:
    """A label read onto its image's grid (what :func:`load_segmentation` returns).

    Attributes:
        labelmap: uint8 (uint16 beyond 255 classes) image on the reference grid; numpy
            ``(H, W)`` or ``(D, H, W)``; 0 background, ``i + 1`` = ``classes[i]``.
        classes: the class names (as given, or from the file).
        colors: one (r, g, b) in 0..1 per class: the file's segment colour, else a default.
        missing: classes with no voxel in this label (allowed; worth reporting).
        overlap_voxels: voxels claimed by more than one segment (given to the later class).
    """

    labelmap: sitk.Image
    classes: list[str]
    colors: list[Color]
    missing: list[str] = field(default_factory=list)
    overlap_voxels: int = 0


def is_seg_nrrd(path: str | Path) -> bool:
    """True for a Slicer segmentation file: named ``.seg.nrrd``, or a ``.nrrd`` whose
    header has segment fields (Slicer also saves segmentations under plain names)."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".seg.nrrd"):
        return True
    if not name.endswith(".nrrd") or not path.is_file():
        return False
    import nrrd  # pynrrd (slicerio's reader) also reads the 4D headers of layered segmentations

    try:
        header = nrrd.read_header(str(path))
    except Exception:
        return False  # not for us to judge here; reading it as a label map will say what is wrong
    return any(key.startswith("Segment0_") for key in header)


def _default_color(index: int) -> Color:
    return tuple(DEFAULT_COLORS[index % len(DEFAULT_COLORS)])


def _read_slicerio(path: Path, skip_voxels: bool) -> dict:
    import slicerio

    if not path.is_file():
        raise UserError("No such file.", path=path, fix="check the path.")
    try:
        return slicerio.read_segmentation(str(path), skip_voxels=skip_voxels)
    except Exception as err:  # pynrrd and slicerio raise several types for a bad file
        raise UserError(f"Could not read this segmentation ({err}).", path=path,
                        fix="save it again from Slicer (Data module, right-click, Export) as .seg.nrrd.") from err


def class_names_from(path: str | Path) -> tuple[list[str], list[Color]]:
    """Segment names and colours of a ``.seg.nrrd``, in the file's segment order (header only).

    A segment without a stored colour gets a default one.

    Raises:
        UserError: not a segmentation file (a label map has no names), unreadable, or
            without segments.
    """
    path = Path(path)
    if not is_seg_nrrd(path):
        raise UserError("Only a Slicer .seg.nrrd stores class names; this is a label map.", path=path,
                        fix="give the class names (--classes a,b,c), or save the label as .seg.nrrd from Slicer.")
    segmentation = _read_slicerio(path, skip_voxels=True)
    segments = segmentation.get("segments", [])
    if not segments:
        raise UserError("This segmentation has no segments.", path=path, fix="add segments in Slicer's Segment Editor.")
    names = [s.get("name") or s.get("id", f"Segment_{i + 1}") for i, s in enumerate(segments)]
    colors = [tuple(float(c) for c in s["color"][:3]) if "color" in s else _default_color(i)
              for i, s in enumerate(segments)]
    return names, colors


def _mismatch(path: Path, reference_path, why: str, label: Grid, reference: Grid) -> UserError:
    image = f"the image {reference_path}" if reference_path else "its image"
    return UserError(
        f"This label does not lie on the voxel grid of {image}: {why}. Label grid: {label.describe()}; "
        f"image grid: {reference.describe()}.", path=path,
        fix="save the label on the image's own geometry (in Slicer: set the segmentation's source volume "
            "to this image before exporting, or export the label map with this image as reference); "
            "labels are never resampled.")


def _segments_on_grid(path: Path, classes: list[str] | None, reference: sitk.Image, reference_path):
    """Per-class masks of a .seg.nrrd on the reference grid: (classes, colors, masks, overlap)."""
    segmentation = _read_slicerio(path, skip_voxels=False)
    voxels = np.asarray(segmentation["voxels"])
    layers = voxels if voxels.ndim == 4 else voxels[np.newaxis]  # (layer, i, j, k)
    grid = Grid.of_ijk_to_lps(layers.shape[1:], segmentation["ijkToLPS"])
    ref_grid = Grid.of_image(reference)
    squeeze = ref_grid.dims == 2 and grid.size[2] == 1
    if squeeze:
        grid = grid.planar()
    try:
        offset = offset_on(grid, ref_grid)
    except GridMismatch as err:
        raise _mismatch(path, reference_path, str(err), grid, ref_grid) from None

    segments = segmentation.get("segments", [])
    from_file = classes is None
    names: list[str] = [] if from_file else list(classes)
    colors: list[Color | None] = [None] * len(names)
    masks: list[np.ndarray | None] = [None] * len(names)
    for number, segment in enumerate(segments):
        try:
            index = match_class(segment_names(segment), names)
        except ValueError as err:
            raise UserError(f"Cannot tell which class segment {segment.get('name')!r} is: {err}.", path=path,
                            fix="rename the segment in Slicer's Segment Editor to exactly one class name.") from None
        if index is None:
            if not from_file:
                raise UserError(
                    f"Segment {segment.get('name')!r} is not one of the classes ({', '.join(names)}).", path=path,
                    fix="rename the segment to one of these classes in Slicer's Segment Editor, or delete it "
                        "(or add the class to the project).")
            names.append(segment.get("name") or segment.get("id", f"Segment_{number + 1}"))
            colors.append(None)
            masks.append(None)
            index = len(names) - 1
        layer, value = segment.get("layer", 0), segment.get("labelValue", 1)
        if not (isinstance(layer, int) and 0 <= layer < len(layers) and isinstance(value, (int, float))):
            raise UserError(f"Segment {segment.get('name')!r} points at layer {layer!r}, label value {value!r}, "
                            f"but the file has {len(layers)} layer(s).", path=path,
                            fix="save the segmentation again from Slicer; its header is damaged.")
        # (i, j, k) -> numpy (k, j, i) = (D, H, W)
        mask = np.transpose(layers[layer] == value)
        if squeeze:
            mask = mask[0]
        masks[index] = mask if masks[index] is None else masks[index] | mask  # same-named segments merge
        if colors[index] is None and "color" in segment:
            colors[index] = tuple(float(c) for c in segment["color"][:3])

    shape = tuple(reversed(grid.size))  # numpy order of the (possibly planar) label grid
    labels = np.zeros(shape, dtype=np.uint8 if len(names) < 256 else np.uint16)
    claimed = np.zeros(shape, dtype=np.uint16)
    # Later classes are painted last, so an overlapping voxel goes to the later class.
    for index, mask in enumerate(masks):
        if mask is not None:
            labels[mask] = index + 1
            claimed += mask
    overlap = int(np.count_nonzero(claimed > 1))
    try:
        labels = place(labels, offset, ref_grid.size)
    except GridMismatch as err:
        raise _mismatch(path, reference_path, str(err), grid, ref_grid) from None
    colors = [c if c is not None else _default_color(i) for i, c in enumerate(colors)]
    return names, colors, labels, overlap


def _labelmap_on_grid(path: Path, classes: list[str] | None, reference: sitk.Image, reference_path):
    """A label map's values on the reference grid: (classes, colors, labels)."""
    lower = path.name.lower()
    if lower.endswith(_LOSSY):
        raise UserError("JPEG is lossy and changes label values.", path=path,
                        fix="save the label map as .png, .nrrd or .nii.gz.")
    if not lower.endswith(LABELMAP_SUFFIXES):
        raise UserError("This file type is not a supported label.", path=path,
                        fix="use a .seg.nrrd or a label map (.nrrd, .nii.gz, .nii, .mha, .png).")
    if not path.is_file():
        raise UserError("No such file.", path=path, fix="check the path.")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise UserError(f"Could not read this label map ({str(err).strip().splitlines()[-1]}).", path=path,
                        fix="check that the file is complete; save it again.") from err
    pixels = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() > 1:
        # An index PNG saved as gray-as-RGB is fine; real colours are not label values.
        colour = pixels[..., :3]
        if not (np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 0], colour[..., 2])):
            raise UserError("This label map is a colour picture, not label values.", path=path,
                            fix="save it as a single-channel (gray / index) image whose values are 0, 1, 2, ...")
        pixels = colour[..., 0]
    ref_grid = Grid.of_image(reference)
    grid = Grid.of_image(image)
    if ref_grid.dims == 2 and grid.dims == 3 and grid.size[2] == 1:
        grid, pixels = grid.planar(), pixels[0]
    if lower.endswith(PICTURE_SUFFIXES):
        # A PNG cannot store spacing or origin: it lies on the image's grid when the sizes agree.
        grid = ref_grid.with_size(grid.size) if grid.dims == ref_grid.dims else grid
    try:
        offset = offset_on(grid, ref_grid)
        if any(offset) or grid.size != ref_grid.size:
            raise GridMismatch("the label map covers another extent (only a .seg.nrrd may be cropped)")
    except GridMismatch as err:
        raise _mismatch(path, reference_path, str(err), grid, ref_grid) from None

    values = np.unique(pixels)
    if not np.all(values == np.rint(values)) or values.min() < 0:
        bad = next(v for v in values if v != np.rint(v) or v < 0)
        raise UserError(f"This label map holds the value {bad:g}; label values are whole numbers 0, 1, 2, ...",
                        path=path, fix="is this an image rather than a label? Save the label map with integer values.")
    top = int(values.max())
    names = list(classes) if classes is not None else [f"label_{v}" for v in range(1, top + 1)]
    if top > len(names):
        raise UserError(f"This label map holds the value {top}, which has no class "
                        f"(values 1..{len(names)} are {', '.join(names)}).", path=path,
                        fix="relabel it (0 background, i for the i-th class) or add the class to the project.")
    labels = pixels.astype(np.uint8 if len(names) < 256 else np.uint16)
    return names, [_default_color(i) for i in range(len(names))], labels


def load_segmentation(path: str | Path, classes: Sequence[str] | None, reference: sitk.Image, *,
                      reference_path: str | Path | None = None, allow_empty: bool = False) -> LabelRead:
    """Read a ``.seg.nrrd`` or label map onto the reference image's grid.

    Args:
        path: a Slicer ``.seg.nrrd`` (or a ``.nrrd`` with segment fields), or a label
            map (``.nrrd .nhdr .nii.gz .nii .mha .mhd .tif .png .bmp``).
        classes: class names; value ``i + 1`` is ``classes[i]``. Segments are matched
            by name, ignoring case and ``_``/``-``/space differences, or by their
            Slicer terminology (``Right`` + ``Lung``). None: the classes are the
            file's segments in file order (a label map: ``label_1 .. label_<max>``).
        reference: the image the label belongs to (2D or 3D, as ``read_image`` gives it).
        reference_path: the image's file, named in error messages.
        allow_empty: accept a label without foreground (e.g. a prediction).

    Overlapping segments (Slicer keeps them in separate layers) cannot all be kept in
    one label map: a voxel in several segments goes to the class that comes later in
    ``classes``; ``overlap_voxels`` counts such voxels.

    Geometry: the label's grid must be the image's (spacing, direction within a
    relative 1e-4, origin within 1e-3 voxel). A ``.seg.nrrd`` may cover a part of the
    image (Slicer crops to the content) when its voxels are the image's voxels; it is
    then padded with background. A PNG carries no geometry, so only its size must
    match. Nothing is ever resampled. A one-slice 3D label fits a 2D image.

    Raises:
        UserError: unreadable file; grid mismatch (names both files); a segment that
            is not a class; a value without a class; no foreground ("empty label")
            unless ``allow_empty``.
    """
    path = Path(path)
    if classes is not None:
        classes = list(classes)
        if len(set(classes)) != len(classes):
            raise ValueError(f"class names must be unique: {classes}")
    overlap = 0
    if is_seg_nrrd(path):
        names, colors, labels, overlap = _segments_on_grid(path, classes, reference, reference_path)
    else:
        names, colors, labels = _labelmap_on_grid(path, classes, reference, reference_path)
    if not allow_empty and not labels.any():
        raise UserError("Empty label: no voxel belongs to any class.", path=path,
                        fix="paint at least one class, or remove the file so the case counts as unlabeled.")
    present = np.bincount(labels.ravel(), minlength=len(names) + 1)
    missing = [n for i, n in enumerate(names) if present[i + 1] == 0]
    labelmap = sitk.GetImageFromArray(labels)
    labelmap.CopyInformation(reference)
    return LabelRead(labelmap, names, colors, missing, overlap)


def read_segmentation(path: str | Path, classes: Sequence[str] | None, reference: sitk.Image, *,
                      reference_path: str | Path | None = None, allow_empty: bool = False) -> sitk.Image:
    """The label map of :func:`load_segmentation` (see there): uint8, on the reference
    grid, 0 background, ``i + 1`` = ``classes[i]``. Classes absent from the label and
    overlapping segments are logged (warning), not errors."""
    result = load_segmentation(path, classes, reference, reference_path=reference_path, allow_empty=allow_empty)
    if result.missing:
        log.warning("%s: no voxel of class(es) %s", path, ", ".join(result.missing))
    if result.overlap_voxels:
        log.warning("%s: %d voxel(s) lie in several segments; each went to the later class",
                    path, result.overlap_voxels)
    return result.labelmap
