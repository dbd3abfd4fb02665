"""Model folders and training state in safetensors + JSON: loading a model never runs code.

A model folder holds
- ``config.json``: the model's configuration; its format is :mod:`DiffusionSegLib.modelconfig`;
- ``model.safetensors``: the weights used for sampling, fine-tuning and prediction (EMA);
- ``training_state.safetensors``: what ``--resume`` needs: raw weights, EMA, optimiser
  and gradient-scaler tensors, with the step, optimiser hyper-parameters and random
  state as JSON in the file's metadata.

Pickle-based files (``torch.save``) are refused with an explanation, never opened.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from .. import modelconfig
from ..errors import UserError
from ..atomic import write_atomic
from ..modelconfig import CONFIG_NAME, MODEL_FORMAT, ModelConfig

WEIGHTS_NAME = "model.safetensors"
STATE_NAME = "training_state.safetensors"

# torch.save writes a zip archive ("PK") or, in the legacy format, a pickle stream (0x80).
_PICKLE_SIGNATURES = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def _is_safetensors(head: bytes, size: int) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then a JSON header ('{')."""
    return len(head) >= 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= size - 8


def _refuse_pickle(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(9)
    # Why the safetensors check first: a header length of 640, 896, ... (mod 65536) begins with
    # the bytes 0x80 0x02.. and would otherwise be mistaken for a pickle stream.
    if _is_safetensors(head, path.stat().st_size):
        return
    if any(head.startswith(sig) for sig in _PICKLE_SIGNATURES):
        raise UserError(
            "this is a pickle (torch.save) file; DiffusionSeg never opens pickle files because loading one can run "
            "arbitrary code.", path=path,
            fix="use a DiffusionSeg model folder, or convert trusted weights with safetensors.torch.save_file.")


def _save_tensors(tensors: dict[str, torch.Tensor], tmp: Path, metadata: dict, target: Path) -> None:
    """safetensors' save_file; its I/O errors (a full disk) become the OSError they are, naming ``target``."""
    try:
        save_file(_contiguous_cpu(tensors), str(tmp), metadata=metadata)
    except SafetensorError as exc:
        code = re.search(r"os error (\d+)", str(exc))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(target)) from exc


def fit_weights(module: torch.nn.Module, weights: dict[str, torch.Tensor], model_dir: str | Path,
                strict: bool = True) -> None:
    """Load ``weights`` into ``module``, or say which tensor does not fit the network config.json describes.

    Args:
        strict: False allows ``module`` to have tensors the weights lack (only shapes are checked).
    """
    expected = module.state_dict()
    wrong = [k for k, v in weights.items() if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    unexpected = [k for k in weights if k not in expected]
    missing = [k for k in expected if k not in weights] if strict else []
    if wrong or unexpected or missing:
        name = (wrong or unexpected or missing)[0]
        detail = (f"{name} has shape {tuple(weights[name].shape)}, the network needs "
                  f"{tuple(expected[name].shape)}" if wrong else
                  f"{name} is {'not in the network' if unexpected else 'missing'}")
        raise UserError(f"the weights do not fit the network that config.json describes ({detail}; "
                        f"{len(wrong) + len(unexpected) + len(missing)} tensor(s) differ).",
                        path=Path(model_dir) / WEIGHTS_NAME,
                        fix="restore the model folder from its original copy (config.json and model.safetensors "
                            "belong together), or train it again.")
    module.load_state_dict(weights, strict=strict)


def _contiguous_cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}


def save_model(model_dir: str | Path, config: ModelConfig | dict, weights: dict[str, torch.Tensor]) -> None:
    """Write ``model.safetensors`` then ``config.json``, each atomically.

    ``config`` is a :class:`ModelConfig` or its plain form (without format and version); it is
    validated before anything is written. The config goes last: a folder with a config always
    has complete weights.
    """
    model_dir = Path(model_dir)
    if isinstance(config, dict):
        config = modelconfig.from_dict({"format": MODEL_FORMAT, "version": modelconfig.MODEL_VERSION, **config},
                                       model_dir / CONFIG_NAME)
    write_atomic(model_dir / WEIGHTS_NAME,
                 lambda tmp: _save_tensors(weights, tmp, {"format": MODEL_FORMAT}, model_dir / WEIGHTS_NAME))
    modelconfig.save(config, model_dir)


def load_model_config(model_dir: str | Path) -> ModelConfig:
    """The typed, validated config of a DiffusionSeg model folder (a pickle file passed instead is refused)."""
    model_dir = Path(model_dir)
    if model_dir.is_file():
        _refuse_pickle(model_dir)
        raise UserError("a model is a folder (config.json + model.safetensors), not a single file.", path=model_dir,
                        fix="pass the folder that pretrain or finetune wrote.")
    return modelconfig.load(model_dir)


def load_config(model_dir: str | Path) -> dict:
    """The config of a DiffusionSeg model folder, validated, as plain data (see :func:`load_model_config`)."""
    return load_model_config(model_dir).to_dict()


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserError("the weights file is missing.", path=path, fix="restore the model folder, or train it again.")
    _refuse_pickle(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"the weights file is corrupt or not safetensors ({exc}).", path=path,
                        fix="restore the model folder, or train it again.") from exc


def load_weights(model_dir: str | Path) -> dict[str, torch.Tensor]:
    """The model's (EMA) weights, on the CPU."""
    return _load_tensors(Path(model_dir) / WEIGHTS_NAME)


def save_training_state(model_dir: str | Path, *, step: int, model: dict[str, torch.Tensor],
                        ema: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                        scaler: torch.amp.GradScaler, extra: dict) -> None:
    """Everything ``--resume`` needs to continue exactly where the run stopped."""
    tensors = {f"model.{k}": v for k, v in model.items()}
    tensors.update({f"ema.{k}": v for k, v in ema.items()})
    opt = optimizer.state_dict()
    opt_scalars: dict[str, dict] = {}
    for pid, state in opt["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                opt_scalars.setdefault(str(pid), {})[key] = value
    metadata = {
        "format": MODEL_FORMAT,
        "step": str(step),
        "param_groups": json.dumps(opt["param_groups"]),
        "optimizer_scalars": json.dumps(opt_scalars),
        "scaler": json.dumps({k: (v.item() if torch.is_tensor(v) else v) for k, v in scaler.state_dict().items()}),
        "extra": json.dumps(extra),
    }
    target = Path(model_dir) / STATE_NAME
    write_atomic(target, lambda tmp: _save_tensors(tensors, tmp, metadata, target))


def load_training_state(model_dir: str | Path) -> dict:
    """Read what :func:`save_training_state` wrote.

    Returns:
        dict with ``step``, ``model``, ``ema`` (state dicts), ``optimizer`` (a state dict
        for ``Optimizer.load_state_dict``), ``scaler`` and ``extra``.
    """
    path = Path(model_dir) / STATE_NAME
    tensors = _load_tensors(path)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != MODEL_FORMAT or "step" not in meta:
        raise UserError("this is not a DiffusionSeg training state.", path=path,
                        fix="resume only into a folder that `diffusionseg pretrain` wrote.")
    groups = json.loads(meta["param_groups"])
    scalars = json.loads(meta["optimizer_scalars"])
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, values in scalars.items():
        state.setdefault(int(pid), {}).update(values)
    return {
        "step": int(meta["step"]),
        "model": {k[6:]: v for k, v in tensors.items() if k.startswith("model.")},
        "ema": {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")},
        "optimizer": {"state": state, "param_groups": groups},
        "scaler": json.loads(meta["scaler"]),
        "extra": json.loads(meta["extra"]),
    }
