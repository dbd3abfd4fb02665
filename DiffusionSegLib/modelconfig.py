"""A model folder's config.json: the one typed, versioned definition of its format.

Every reader and writer of config.json goes through this module: the backend (pretrain,
finetune, bpr, selftrain, predict, sample, suggest), the Slicer module (which imports it
before torch is installed, so it uses the standard library only and runs on Python 3.9)
and the benchmarks.

A config holds, by ``kind``:

==============  ============================================================================
pretrained      dims, objective, network, diffusion, preprocessing, training
segmentation    dims, network, preprocessing, timestep, task (classes), mode, [probe], training
landmarks       dims, network, preprocessing, timestep, task (landmarks), mode, [probe], training
bpr             network (BPR), preprocessing (BPR), slices, score_range, training
==============  ============================================================================

plus ``format``/``version`` (stated here only), ``created_by`` and, for self-trained models,
``selftrain``. :func:`load` refuses a missing or unknown key, a value of the wrong type and
an unknown format, version or kind with one :class:`UserError` that names config.json and the
fix. :func:`from_dict` and :func:`to_dict` round-trip what the writers produce exactly (key
order and the keys that older versions left out included), so re-saving a folder changes nothing.
"""

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from .atomic import write_json_atomic
from .errors import UserError
from .vocabulary import ARCHITECTURES, AUGMENTATIONS, FINETUNE_MODES, TASKS
from .vocabulary import OBJECTIVES as VOCABULARY_OBJECTIVES

MODEL_FORMAT = "diffusionseg-model"
MODEL_VERSION = 1
CONFIG_NAME = "config.json"
TASK_KINDS = TASKS            # a task model's kind is its task (vocabulary.py states them once)
KINDS = ("pretrained", *TASK_KINDS, "bpr")
MODES = FINETUNE_MODES
OBJECTIVES = VOCABULARY_OBJECTIVES

_RESTORE = "restore the model folder from its original copy, or train it again."


class ConfigError(Exception):
    """A config.json that does not fit the schema; ``where`` is the key path (``network.channels``)."""

    def __init__(self, where: str, message: str):
        self.where, self.message = where, message
        super().__init__(f"{where}: {message}" if where else message)


def _optional(default: Any = None, keep_null: bool = False) -> Any:
    """An optional key; with ``keep_null`` a None value is written as null, otherwise left out."""
    return dataclasses.field(default=default, metadata={"keep_null": keep_null})


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check(value: Any, tp: Any, where: str) -> Any:
    """``value`` if it fits the type ``tp`` (a Section, nested sections built), else a ConfigError."""
    origin = getattr(tp, "__origin__", None)
    args = getattr(tp, "__args__", ())
    if tp is Any:
        return value
    if origin is Union:
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _check(value, option, where)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[-1] if len(errors) == 1 else ConfigError(where, f"{value!r} is none of the accepted forms.")
    if isinstance(tp, type) and issubclass(tp, Section):
        return tp.from_dict(value, where)
    if origin in (list, List):
        if not isinstance(value, list):
            raise ConfigError(where, f"should be a list, not {json.dumps(value)}.")
        item = args[0] if args else Any
        return [_check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Dict) or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(where, f"should be an object, not {json.dumps(value)}.")
        return value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, tp)
    if not ok:
        raise ConfigError(where, f"should be {_type_name(tp)}, not {json.dumps(value)}.")
    return value


class Section:
    """A JSON object with a fixed set of keys: typed fields, required unless they have a default.

    Subclasses are dataclasses. ``from_dict`` remembers the keys it read (and their order) so
    that ``to_dict`` writes them back as they were; a section built in code writes its fields in
    declaration order, leaving out optional ones that are None unless they keep null.
    """

    @classmethod
    def from_dict(cls, data: Any, where: str = ""):
        if not isinstance(data, dict):
            raise ConfigError(where, f"should be an object, not {json.dumps(data)}.")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = [k for k in data if k not in fields]
        if unknown:
            raise ConfigError(where, f"has the unknown key(s) {', '.join(map(repr, unknown))}.")
        missing = [n for n, f in fields.items() if n not in data
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ConfigError(where, f"lacks the key(s) {', '.join(map(repr, missing))}.")
        hints = _hints(cls)
        values = {k: _check(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
        obj = cls(**values)
        object.__setattr__(obj, "_keys", tuple(data))
        obj.validate(where)
        return obj

    def validate(self, where: str) -> None:
        """Checks across fields; raise ConfigError."""

    def to_dict(self) -> dict:
        keys = getattr(self, "_keys", None)
        fields = {f.name: f for f in dataclasses.fields(self)}
        if keys is None:
            keys = [n for n, f in fields.items() if getattr(self, n) is not None or f.metadata.get("keep_null")
                    or (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)]
        else:  # as read, plus whatever was set since
            keys = [k for k in keys if k in fields] + [n for n in fields if n not in keys
                                                       and getattr(self, n) is not None]
        return {k: _plain(getattr(self, k)) for k in keys}


def _plain(value: Any) -> Any:
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


_HINTS: Dict[type, dict] = {}


def _hints(cls: type) -> dict:
    if cls not in _HINTS:
        import typing
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


# ------------------------------------------------------------------------------------ sections


@dataclasses.dataclass
class Normalisation(Section):
    """Intensity normalisation (see ``imageio.intensity.Normalisation``, which applies it)."""
    method: str
    low: float
    high: float
    modality: str = "other"


@dataclasses.dataclass
class Network(Section):
    """The U-Net (``nets.NetworkConfig``): a DiffusionModelUNet unless ``architecture`` says BasicUNet."""
    spatial_dims: int
    in_channels: int
    out_channels: int
    preset: str
    channels: List[int]
    attention_levels: List[bool]
    num_res_blocks: int
    norm_num_groups: int
    num_head_channels: int
    extra: dict = dataclasses.field(default_factory=dict)
    architecture: Optional[str] = _optional()

    def validate(self, where: str) -> None:
        if self.architecture is not None and self.architecture not in ARCHITECTURES:
            raise ConfigError(f"{where}.architecture",
                              f"should be one of {', '.join(ARCHITECTURES)}, not {self.architecture!r}.")


@dataclasses.dataclass
class Preprocessing(Section):
    """How an image becomes network input (``data.preprocess.Preprocessing``)."""
    dims: int
    normalisation: Normalisation
    image_size: Optional[List[int]]
    spacing: Optional[List[float]]
    patch_size: List[int]
    coordinates: Optional[str] = _optional(keep_null=True)  # absent in models older than coordinates


@dataclasses.dataclass
class Diffusion(Section):
    """The noise schedule (``diffusion.ddpm.DiffusionConfig``)."""
    num_train_timesteps: int = 1000
    schedule: str = "linear_beta"


@dataclasses.dataclass
class SegmentationTask(Section):
    classes: List[str]
    colors: List[List[float]]
    dice_weight: float = 1.0


@dataclasses.dataclass
class LandmarkTask(Section):
    landmarks: List[str]
    sigma_mm: float


@dataclasses.dataclass
class Probe(Section):
    """The head of a frozen-backbone model (mode probe or mlp): timesteps, noise, head size."""
    mode: str
    timesteps: List[int]
    noise_seed: int
    blocks: Optional[List[int]]
    members: int
    hidden: int
    diffusion: Diffusion
    out_channels: int

    def validate(self, where: str) -> None:
        if self.mode not in MODES[1:]:
            raise ConfigError(f"{where}.mode", f"should be one of {', '.join(MODES[1:])}, not {self.mode!r}.")


@dataclasses.dataclass
class BprNetwork(Section):
    """The body-part regression network (``bpr.model.BprNetConfig``)."""
    channels: List[int]
    slice_size: List[int]


@dataclasses.dataclass
class BprPreprocessing(Section):
    slice_size: List[int]
    normalisation: Normalisation
    orientation: str = "LPS"


@dataclasses.dataclass
class Training(Section):
    """What the training was: its settings and how far it got (``step`` < ``iterations``: interrupted)."""
    iterations: int
    batch_size: int
    learning_rate: float
    seed: int
    step: Optional[int] = None
    weight_decay: Optional[float] = None
    augment: Optional[bool] = None                     # before 'augmentation': True meant mild
    augmentation: Optional[str] = None                 # fine-tuning: vocabulary.AUGMENTATIONS
    images: Optional[int] = None                       # pretraining: how many images
    cases: Optional[List[str]] = None                  # fine-tuning: the annotated cases
    init: Optional[str] = None
    pretrained: Optional[str] = None
    grid_spacing: Optional[List[float]] = None
    extra: Optional[List[str]] = None                  # fine-tuning --extra folders
    extra_cases: Optional[int] = None
    extra_weight: Optional[float] = None
    slices: Optional[int] = None                       # body-part regression
    distance_weight: Optional[float] = None
    volumes: Optional[int] = None
    final_loss: Optional[float] = None
    train_spearman_min: Optional[float] = None

    def validate(self, where: str) -> None:
        if self.augmentation is not None and self.augmentation not in AUGMENTATIONS:
            raise ConfigError(f"{where}.augmentation",
                              f"should be one of {', '.join(AUGMENTATIONS)}, not {self.augmentation!r}.")

    def augmentation_recipe(self) -> str:
        """The fine-tuning's augmentation recipe; a folder from before recipes had a yes/no (yes = mild)."""
        if self.augmentation is not None:
            return self.augmentation
        return "none" if self.augment is False else "mild"


@dataclasses.dataclass
class Selftrain(Section):
    """The self-training rounds that made the model (``diffusionseg selftrain``)."""
    rounds: int
    final_round: int
    run: str
    pseudo_labels: List[dict]


# ------------------------------------------------------------------------------- the config

#: The top-level keys each kind must hold (all others but the common ones are refused).
REQUIRED = {
    "pretrained": ("dims", "network", "preprocessing"),
    "segmentation": ("dims", "network", "preprocessing", "task"),
    "landmarks": ("dims", "network", "preprocessing", "task"),
    "bpr": ("network", "preprocessing", "score_range"),
}
_ALLOWED = {
    "pretrained": {"objective", "diffusion"},
    "segmentation": {"timestep", "mode", "probe", "selftrain"},
    "landmarks": {"timestep", "mode", "probe", "selftrain"},
    "bpr": {"slices"},
}
_COMMON = {"kind", "training", "created_by"}
_SECTIONS = {  # key -> type, by kind where it differs
    "network": {"bpr": BprNetwork, None: Network},
    "preprocessing": {"bpr": BprPreprocessing, None: Preprocessing},
    "task": {"segmentation": SegmentationTask, "landmarks": LandmarkTask},
}


@dataclasses.dataclass
class ModelConfig(Section):
    """One model folder's config.json (without ``format`` and ``version``, which :func:`to_dict` adds)."""
    kind: str
    network: Union[Network, BprNetwork]
    preprocessing: Union[Preprocessing, BprPreprocessing]
    dims: Optional[int] = None
    objective: Optional[str] = None                    # pretrained; absent means "ddpm"
    diffusion: Optional[Diffusion] = None
    timestep: Optional[int] = None
    task: Optional[Union[SegmentationTask, LandmarkTask]] = None
    mode: Optional[str] = None                         # absent means "full"
    probe: Optional[Probe] = None
    slices: Optional[int] = None
    score_range: Optional[List[float]] = None
    training: Optional[Training] = None
    created_by: Optional[str] = None
    selftrain: Optional[Selftrain] = None

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> "ModelConfig":
        if not isinstance(data, dict):
            raise ConfigError("", "is not a JSON object.")
        kind = data.get("kind")
        if kind not in KINDS:
            raise ConfigError("kind", f"{kind!r} is not a model kind ({', '.join(KINDS)}).")
        missing = [k for k in REQUIRED[kind] if k not in data]
        if missing:
            raise ConfigError("", f"a {kind} model lacks the key(s) {', '.join(map(repr, missing))}.")
        allowed = _COMMON | set(REQUIRED[kind]) | _ALLOWED[kind]
        unknown = [k for k in data if k not in allowed]
        if unknown:
            raise ConfigError("", f"a {kind} model has the unknown key(s) {', '.join(map(repr, unknown))}.")
        sections = {key: by_kind.get(kind, by_kind.get(None)) for key, by_kind in _SECTIONS.items()}
        values = {k: (sections[k].from_dict(v, k) if sections.get(k) else _check(v, _hints(cls)[k], k))
                  for k, v in data.items()}
        obj = cls(**values)
        object.__setattr__(obj, "_keys", tuple(data))
        obj.validate("")
        return obj

    def validate(self, where: str) -> None:
        if self.objective is not None and self.objective not in OBJECTIVES:
            raise ConfigError("objective", f"should be one of {', '.join(OBJECTIVES)}, not {self.objective!r}.")
        if self.mode is not None and self.mode not in MODES:
            raise ConfigError("mode", f"should be one of {', '.join(MODES)}, not {self.mode!r}.")
        if self.head != "full" and self.probe is None:
            raise ConfigError("probe", f"a {self.head} model needs its 'probe' section.")
        if self.dims is not None and self.dims not in (2, 3):
            raise ConfigError("dims", f"should be 2 or 3, not {self.dims!r}.")

    @property
    def head(self) -> str:
        """``full`` (the whole U-Net with a task output layer), ``probe`` or ``mlp`` (frozen backbone)."""
        return self.mode or "full"

    @property
    def pretrain_objective(self) -> str:
        return self.objective or "ddpm"

    def to_dict(self) -> dict:
        """The JSON object written to config.json, ``format`` and ``version`` first."""
        return {"format": MODEL_FORMAT, "version": MODEL_VERSION, **super().to_dict()}


# ---------------------------------------------------------------------------------- files


def from_dict(data: Any, path: Union[str, Path, None] = None) -> ModelConfig:
    """Validate a parsed config.json (format and version included); errors name ``path``."""
    path = Path(path) if path is not None else Path(CONFIG_NAME)
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise UserError("config.json is not a DiffusionSeg model configuration.", path=path,
                        fix="pass a folder written by DiffusionSeg.")
    version = data.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise UserError(f"config.json has a version {version!r} that is not a whole number.", path=path,
                        fix=_RESTORE)
    if version > MODEL_VERSION:
        raise UserError(f"model version {version} is newer than this DiffusionSeg understands "
                        f"(version {MODEL_VERSION}).", path=path, fix="update DiffusionSeg.")
    body = {k: v for k, v in data.items() if k not in ("format", "version")}
    try:
        return ModelConfig.from_dict(body)
    except ConfigError as exc:
        where = f"the key '{exc.where}' " if exc.where else ""
        raise UserError(f"{where}{exc.message}", path=path, fix=_RESTORE) from exc


def to_dict(config: ModelConfig) -> dict:
    return config.to_dict()


def read_json(model_dir: Union[str, Path]) -> Any:
    """The parsed config.json of ``model_dir`` (not validated); a missing or unreadable file is a UserError."""
    model_dir = Path(model_dir)
    path = model_dir / CONFIG_NAME
    if not path.is_file():
        raise UserError("not a DiffusionSeg model folder (no config.json).", path=model_dir,
                        fix="pass the folder that `diffusionseg pretrain`, `finetune` or `bpr train` wrote.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UserError(f"config.json is not valid JSON ({exc}).", path=path, fix=_RESTORE) from exc


def load(model_dir: Union[str, Path]) -> ModelConfig:
    """The validated config of the model folder ``model_dir``."""
    return from_dict(read_json(model_dir), Path(model_dir) / CONFIG_NAME)


def save(config: ModelConfig, model_dir: Union[str, Path]) -> Path:
    """Write ``model_dir/config.json`` atomically (validated first, so nothing invalid is written)."""
    path = Path(model_dir) / CONFIG_NAME
    data = config.to_dict()
    from_dict(data, path)
    write_json_atomic(path, data)
    return path
