"""The vocabulary, stated once: case names, the suffixes of each file role, the choice lists.

Plain Python (3.9), no torch, numpy or SimpleITK: the Slicer module and its batch script
import it too, so a case, a label file or an option value means the same everywhere.

Case naming rule
----------------
A case is the name of an image file without its suffix, the name of a label or landmark
file without its suffix, or the name of a DICOM series folder:

- suffixes are matched case-insensitively, the longest known one wins, and compound
  suffixes count as one: ``Knee.NII.GZ`` -> ``Knee``, ``a.seg.nrrd`` -> ``a``,
  ``a.mrk.json`` -> ``a`` (never ``a.seg`` or ``a.mrk``);
- a folder (one DICOM series of slices) is the case named after the folder: ``case7/`` -> ``case7``;
- a file without a known suffix keeps its full name: DICOM files are often named by UID
  (``1.2.840.113619.2.55``) or number (``IM0001``), and cutting at the last dot would give
  two files of one series the same case;
- two images of one case in one folder (``a.png`` and ``a.nrrd``, ``a.nii.gz`` and a
  DICOM folder ``a/``) are an error naming both files (:func:`case_map`), never a silent
  choice. Among label files of one case the role's preference order decides
  (``a.seg.nrrd`` before ``a.nrrd``; ``a.mrk.json`` before ``a.csv``), see :func:`case_files`.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional, Tuple, Type

from .errors import UserError


# ------------------------------------------------------------------ choice lists
def _choices(name: str, choices: Tuple[str, ...], doc: str) -> Type[enum.Enum]:
    """``class <name>(str, enum.Enum)`` with one member per choice (``fp32`` -> ``FP32``), in that order.

    Python 3.9 has no StrEnum; a str mix-in makes ``Task.SEGMENTATION == "segmentation"``.
    """
    made = enum.Enum(name, [(c.upper(), c) for c in choices], type=str, module=__name__)
    made.__doc__ = doc
    return made


Task = _choices("Task", ("segmentation", "landmarks"), "What a project or task model does.")
Modality = _choices("Modality", ("xray", "ct", "mri", "other"),
                    "Chooses the intensity normalisation (imageio/intensity.py): ct a HU window, else percentiles.")
FinetuneMode = _choices("FinetuneMode", ("full", "probe", "mlp"),
                        "full: the whole U-Net (PTDR); probe / mlp: frozen pretrained U-Net and a trained head.")
Objective = _choices("Objective", ("ddpm", "masked"),
                     "Pretraining: diffusion denoising (the method) or masked image modelling (a baseline).")
Precision = _choices("Precision", ("auto", "fp32", "fp16", "bf16"),
                     "auto: bf16/fp16 mixed precision on GPUs, fp32 on the CPU.")
Progress = _choices("Progress", ("bar", "json", "none"),
                    "--progress: a bar on stderr, one JSON event per line on stdout, or nothing.")
Augmentation = _choices("Augmentation", ("strong", "mild", "none"),
                        "Fine-tuning augmentation (data/augment.py): strong = nnU-Net-style spatial and intensity, "
                        "mild = small affine only, none = crops only.")
ConfidenceMeasure = _choices("ConfidenceMeasure", ("foreground", "image", "peak"),
                             "How synthesize and selftrain score a label: segmentation foreground or image; "
                             "landmarks peak (synthesize/confidence.py).")
Schedule = _choices("Schedule", ("linear_beta", "scaled_linear_beta", "sigmoid_beta", "cosine"),
                    "DDPM noise schedule, by MONAI DDPMScheduler's names (linear_beta: Ho et al. 2020's).")
Architecture = _choices("Architecture", ("DiffusionModelUNet", "BasicUNet"),
                        "The network family, by MONAI's class names: every preset DiffusionSeg pretrains is a "
                        "DiffusionModelUNet; preset plain is a BasicUNet (never pretrained; nets/plain.py).")
#: The preset of MONAI's BasicUNet (nets/presets.py): trained from scratch, never pretrained.
PLAIN_PRESET = "plain"
FinetuneNetwork = _choices("FinetuneNetwork", ("pretrained", PLAIN_PRESET),
                           "What Fine-tune trains in the Slicer panel and the batch script: the pretrained "
                           "diffusion U-Net, or MONAI's BasicUNet from scratch (preset plain).")
Sampler = _choices("Sampler", ("ddim", "ddpm"),
                   "sample: DDIM (eta 0, strided steps; the default) or the full DDPM chain.")


def values(choices: Type[enum.Enum]) -> Tuple[str, ...]:
    """The values of a choice enum in their stated order (what argparse and Choice take)."""
    return tuple(member.value for member in choices)


TASKS = values(Task)
MODALITIES = values(Modality)
FINETUNE_MODES = values(FinetuneMode)
PROBE_MODES = tuple(m for m in FINETUNE_MODES if m != FinetuneMode.FULL.value)
OBJECTIVES = values(Objective)
PRECISIONS = values(Precision)
PROGRESS_MODES = values(Progress)
CONFIDENCE_MEASURES = values(ConfidenceMeasure)
AUGMENTATIONS = values(Augmentation)
ARCHITECTURES = values(Architecture)
FINETUNE_NETWORKS = values(FinetuneNetwork)
SCHEDULES = values(Schedule)
SAMPLERS = values(Sampler)
#: ``--modality`` of pretrain and finetune: a modality, or auto (guessed from the images, data/choose.py).
AUTO_MODALITY = "auto"
AUTO_MODALITIES = (AUTO_MODALITY,) + MODALITIES
#: Fine-tuning's defaults: the recipe and the number of steps (chosen on the JSRT validation split,
#: benchmarks/results/RESULTS.md); the CLI, the Slicer panel and the batch script all read them here.
DEFAULT_FINETUNE_ITERATIONS = 1200
DEFAULT_AUGMENTATION = Augmentation.STRONG.value


def default_selftrain(task: str, dims: int) -> bool:
    """Whether the Slicer panel's Fine-tune and the batch script's --finetune self-train by default
    (``diffusionseg selftrain``: fine-tune, label the unlabeled cases, fine-tune again on both; about
    twice the time). On where it won on validation: 2D segmentation (JSRT, RESULTS.md sessions 10-11;
    on test +1.3 / +0.7 mIoU over plain fine-tuning at N = 1 / 2, every paired draw). Off for 3D, where it
    was not measured, one fine-tuning already takes tens of minutes on a CPU and the plain supervised
    U-Net leads (session 9), and for landmarks, where it was not measured."""
    return task == Task.SEGMENTATION.value and dims == 2


def default_finetune_network(task: str, dims: int) -> str:  # noqa: ARG001 (task, dims: see below)
    """What the Slicer panel's Fine-tune and the batch script's --finetune train by default
    (``FINETUNE_NETWORKS``): the recipe that won on validation, now the pretrained diffusion U-Net
    everywhere. 2D segmentation (JSRT) and landmarks (ISBI): it led on validation and test. 3D
    segmentation: after a 400-iteration 3D pretraining the plain BasicUNet won the hippocampus
    validation at N = 1 (0.813 against 0.794, session 12) and was the default; after a pretraining of
    the product's default length (DEFAULT_PRETRAIN_ITERATIONS, 2000) the diffusion U-Net scores 0.835
    (session 13, RESULTS.md). ``task`` and ``dims`` stay the arguments: the answer is per task and
    dimension, and may differ again where a benchmark says so (3D landmarks were not measured)."""
    return FinetuneNetwork.PRETRAINED.value


#: Pretraining's number of steps: the CLI's default (PretrainOptions) and the Slicer panel's and batch script's.
DEFAULT_PRETRAIN_ITERATIONS = 2000

# ------------------------------------------------------------------ file roles
#: Images: every suffix SimpleITK reads for us (a DICOM file may also have none, see is_dicom_file).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff",
                  ".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd", ".dcm")
#: Image formats that hold one 2D picture of 8 (PNG: or 16) bit integers.
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
#: Segmentation labels, in order of preference when a case has several: Slicer's
#: segmentation file first, then label maps (voxel value i + 1 = classes[i]).
SEGMENTATION_LABEL_SUFFIXES = (".seg.nrrd", ".nrrd", ".nhdr", ".nii.gz", ".nii", ".mha", ".mhd",
                               ".png", ".tif", ".tiff", ".bmp")
#: Label maps that carry no geometry (only their size must match the image's).
LABEL_PICTURE_SUFFIXES = (".png", ".bmp")
#: Landmark labels, in order of preference: Slicer markups, then Slicer's old .fcsv, then CSV.
LANDMARK_LABEL_SUFFIXES = (".mrk.json", ".fcsv", ".csv")
#: Compound label suffixes: such a file is never an image to train on, even beside the images.
LABEL_ONLY_SUFFIXES = (".seg.nrrd", ".seg.nhdr", ".seg.nii.gz", ".seg.nii") + LANDMARK_LABEL_SUFFIXES
#: What the module writes when it saves an annotation, and predict writes by default.
SEGMENTATION_FILE_SUFFIX = ".seg.nrrd"
LANDMARK_FILE_SUFFIX = ".mrk.json"
#: Extra label-map formats ``predict --format`` writes beside <case>.seg.nrrd.
PREDICTION_LABELMAP_FORMATS = ("nii.gz", "nrrd", "png")
#: Prediction files the Slicer module loads, best first (predict also writes <case>.csv, overlays).
LOADABLE_PREDICTION_SUFFIXES = (".seg.nrrd", ".mrk.json", ".nrrd", ".nii.gz", ".nii")
#: Written by ``diffusionseg predict`` beside its results: {case: confidence measures}.
PREDICTION_CONFIDENCE_FILE = "confidence.json"

_KNOWN_SUFFIXES = tuple(sorted(set(IMAGE_SUFFIXES + SEGMENTATION_LABEL_SUFFIXES + LABEL_ONLY_SUFFIXES),
                               key=len, reverse=True))
#: Folders probe at most this many files for DICOM (a folder of PNGs costs nothing).
_MAX_PROBED = 8


def longest_suffix(name: str, suffixes: Iterable[str]) -> Optional[str]:
    """The longest of ``suffixes`` that ``name`` ends with (case-insensitive) and leaves a name before."""
    lower = name.lower()
    matches = [s for s in suffixes if lower.endswith(s) and len(lower) > len(s)]
    return max(matches, key=len) if matches else None


def case_name(path) -> str:
    """The case of an image, label or landmark file, or of a DICOM series folder (rule above)."""
    path = Path(path)
    if path.is_dir():
        return path.name
    suffix = longest_suffix(path.name, _KNOWN_SUFFIXES)
    return path.name[: -len(suffix)] if suffix else path.name


def image_suffix(path) -> Optional[str]:
    """The image suffix of ``path`` in lower case (``'.nii.gz'``), or None if it has none."""
    return longest_suffix(Path(path).name, IMAGE_SUFFIXES)


def is_label_only_file(path) -> bool:
    """A ``.seg.*`` segmentation or a landmark file: a label even when it sits among images."""
    return Path(path).name.lower().endswith(LABEL_ONLY_SUFFIXES)


def is_image_file(path) -> bool:
    """True when the name ends in an image suffix and is not a label-only file (not opened)."""
    return image_suffix(path) is not None and not is_label_only_file(path)


def is_dicom_file(path) -> bool:
    """A ``.dcm`` file, or any file with the DICOM preamble (``DICM`` at byte 128).

    Scanners often write DICOM files with no suffix, hence the look at the bytes.
    DICOMDIR index files hold no pixels and are not counted.
    """
    path = Path(path)
    if not path.is_file() or path.name.startswith(".") or path.name.upper() == "DICOMDIR":
        return False
    if path.name.lower().endswith(".dcm"):
        return True
    if image_suffix(path) is not None or is_label_only_file(path):
        return False
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def holds_dicom(folder) -> bool:
    """True when ``folder`` (not its sub-folders) holds a DICOM file among its first few files."""
    files = [p for p in sorted(Path(folder).iterdir()) if p.is_file() and not p.name.startswith(".")]
    return any(is_dicom_file(p) for p in files[:_MAX_PROBED])


def image_entries(folder) -> list:
    """The images directly in ``folder``, as the project counts them (sorted by name).

    Image files (labels excluded), DICOM files with or without suffix, and sub-folders
    holding DICOM (one series each). Hidden entries are skipped. imageio.list_images starts
    from this list and only adds the check that loose DICOM slices form one series.
    """
    found = []
    for path in Path(folder).iterdir():
        if path.name.startswith("."):
            continue
        if path.is_file() and (is_image_file(path) or is_dicom_file(path)):
            found.append(path)
        elif path.is_dir() and holds_dicom(path):
            found.append(path)
    return sorted(found, key=lambda p: p.name)


def _same_case(case: str, first: Path, second: Path, folder) -> UserError:
    return UserError(f"two files are one case {case!r}: {first} and {second}.", path=folder,
                     fix="rename or remove one of them (a case is the file name without its suffix; "
                         "a DICOM series folder is named after the folder).")


def case_map(paths: Iterable, folder=None) -> Dict[str, Path]:
    """``{case: path}`` for images; two paths of one case are an error naming both."""
    found: Dict[str, Path] = {}
    for path in map(Path, paths):
        case = case_name(path)
        if case in found and found[case] != path:
            raise _same_case(case, found[case], path, folder if folder is not None else path.parent)
        found[case] = path
    return found


def case_files(folder, suffixes: Tuple[str, ...],
               ignore: Optional[Callable[[str], bool]] = None) -> Dict[str, Path]:
    """``{case: file}`` for the files of one role (``suffixes``, in order of preference) in ``folder``.

    The earlier suffix wins when a case has several files (``a.seg.nrrd`` over ``a.nrrd``);
    two files of one case and one suffix (``a.NRRD`` and ``a.nrrd``) are an error. Hidden
    files, sub-folders and names for which ``ignore(lower-case name)`` is true are skipped.
    A missing folder gives ``{}``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    best: Dict[str, Tuple[int, Path]] = {}
    for path in sorted(folder.iterdir()):
        lower = path.name.lower()
        if lower.startswith(".") or (ignore is not None and ignore(lower)) or not path.is_file():
            continue
        rank = next((i for i, s in enumerate(suffixes) if lower.endswith(s) and len(lower) > len(s)), None)
        if rank is None:
            continue
        case = case_name(path)
        if case in best and best[case][0] == rank:
            raise _same_case(case, best[case][1], path, folder)
        if case not in best or rank < best[case][0]:
            best[case] = (rank, path)
    return {case: path for case, (_rank, path) in sorted(best.items())}


def label_suffixes(task: str) -> Tuple[str, ...]:
    """The label suffixes of a task, in order of preference."""
    return SEGMENTATION_LABEL_SUFFIXES if Task(task) is Task.SEGMENTATION else LANDMARK_LABEL_SUFFIXES
