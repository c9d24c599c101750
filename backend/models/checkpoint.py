"""Checkpoints that carry their metadata and load without executing code.

Format: one `.safetensors` file whose header metadata holds the ModelMeta JSON under the key `clarc`, plus a
readable model card `<name>.json` beside it. Foreign checkpoints are accepted as `.safetensors` or as `.pt`/`.pth`
files that load with `torch.load(weights_only=True)` (a state dict, or {"state_dict", "meta"}), with the metadata in
a JSON file of the same name when the file has none. Anything that would need to unpickle code is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from backend import __version__
from backend.data.views import Normalization
from backend.errors import CheckpointError
from backend.models.layers import LayerInfo, candidate_layers, output_layer
from backend.models.projection import attach_projection
from backend.models.registry import build_model, get_architecture
from backend.storage.files import atomic_path

__all__ = [
    "MissingCardError",
    "ModelMeta",
    "check_state",
    "read_weights",
    "LoadedModel",
    "save_checkpoint",
    "load_checkpoint",
    "file_sha256",
    "card_path",
    "model_fingerprint",
]

_META_KEY = "clarc"
_FORMAT = 1
_TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


@dataclass(frozen=True)
class ModelMeta:
    """What a checkpoint must say about itself to be used: architecture, classes, input size, normalisation; plus
    where it came from (dataset spec, training config) and what it measured."""

    arch: str
    classes: tuple[str, ...]
    input_size: int
    normalization: Normalization = field(default_factory=Normalization)
    dataset: str | None = None
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    created: str = ""
    version: str = __version__
    format: int = _FORMAT

    def __post_init__(self) -> None:
        get_architecture(self.arch)
        if len(self.classes) < 2:
            raise CheckpointError(f"model metadata lists {len(self.classes)} classes; a classifier needs at least 2")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["classes"] = list(self.classes)
        data["normalization"] = {"mean": list(self.normalization.mean), "std": list(self.normalization.std)}
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ModelMeta:
        try:
            norm = data.get("normalization") or {}
            return cls(
                arch=str(data["arch"]),
                classes=tuple(str(c) for c in data["classes"]),
                input_size=int(data["input_size"]),
                normalization=Normalization(
                    tuple(float(v) for v in norm.get("mean", (0.0, 0.0, 0.0))),
                    tuple(float(v) for v in norm.get("std", (1.0, 1.0, 1.0))),
                ),
                dataset=data.get("dataset"),
                training=dict(data.get("training") or {}),
                metrics=dict(data.get("metrics") or {}),
                created=str(data.get("created", "")),
                version=str(data.get("version", "")),
                format=int(data.get("format", _FORMAT)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"model metadata is incomplete or malformed ({exc!r}); needs arch, classes, input_size"
            ) from exc


_BATCH_PIXELS = 32 * 224 * 224  # see LoadedModel.batch_size


@dataclass
class LoadedModel:
    """A model ready for use, its metadata, and the content hash of the file it came from (for cache keys)."""

    module: nn.Module
    meta: ModelMeta
    path: Path | None = None
    sha256: str = ""

    @property
    def default_layer(self) -> str:
        return get_architecture(self.meta.arch).default_layer

    def layers(self) -> list[LayerInfo]:
        """Layers with their output shapes, in forward order (see `models.layers.candidate_layers`)."""
        return candidate_layers(self.module, self.meta.input_size)

    def output_layer(self) -> str:
        """The layer that produces the logits."""
        return output_layer(self.module, self.meta.input_size, len(self.meta.classes))

    def batch_size(self, requested: int) -> int:
        """`requested` images per batch, at most as many pixels as 32 images of 224 px: a batch through the model
        with gradients (TCAV, R_bias) then stays near 1 GB at ISIC's resolution; 64 px images keep their batch."""
        return int(min(requested, max(1, _BATCH_PIXELS // self.meta.input_size**2)))


def model_fingerprint(model: LoadedModel) -> str:
    """The checkpoint's content hash, or a hash of the weights for a model that was never saved: what caches and
    the dashboard key a model by."""
    if model.sha256:
        return model.sha256
    digest = hashlib.sha256()
    for name, tensor in model.module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def card_path(checkpoint: Path) -> Path:
    """The model card (metadata JSON) that sits beside a checkpoint."""
    return Path(checkpoint).with_suffix(".json")


def save_checkpoint(module: nn.Module, meta: ModelMeta, path: str | os.PathLike) -> Path:
    """Write weights + metadata as one safetensors file and a model card beside it; atomic, so a crash mid-write
    never leaves a file that looks complete."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"checkpoints are written as .safetensors files, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not meta.created:
        meta = replace(meta, created=datetime.now(UTC).isoformat(timespec="seconds"))
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    payload = json.dumps(meta.to_dict(), sort_keys=True)
    try:  # the weights are renamed into place first, then their card
        with atomic_path(card_path(path), durable=True) as card_tmp, atomic_path(path, durable=True) as tmp:
            save_file(state, str(tmp), metadata={_META_KEY: payload})
            card_tmp.write_text(json.dumps(meta.to_dict(), indent=2, sort_keys=True) + "\n")
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"could not write the checkpoint {path} (disk full?): {exc}") from exc
    return path


def _read_sidecar(path: Path) -> dict | None:
    card = card_path(path)
    if not card.exists():
        return None
    try:
        return json.loads(card.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"the metadata file {card} beside the checkpoint is not valid JSON: {exc}") from exc


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt?): {exc}") from exc
    meta = None
    if _META_KEY in header:
        try:
            meta = json.loads(header[_META_KEY])
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path} carries malformed ClArC metadata: {exc}") from exc
    return state, meta


def _read_torch(path: Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refused to load {path}: it is not a weights-only checkpoint and loading it could execute code "
            f"({str(exc).splitlines()[0]}). Re-save its state_dict, or convert it to safetensors."
        ) from exc
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {exc}") from exc
    if isinstance(payload, dict) and "state_dict" in payload:
        meta = payload.get("meta")
        payload = payload["state_dict"]
    else:
        meta = None
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return dict(payload), meta


class MissingCardError(CheckpointError):
    """A checkpoint with weights but no card (architecture, classes, input size): a model trained elsewhere."""


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    """The state dict of a checkpoint file and the card it carries (None without one), read without unpickling code:
    safetensors, or a torch file holding a state dict or {"state_dict": ..., "meta": ...} (Lightning's too)."""
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    if path.suffix in _TORCH_SUFFIXES:
        return _read_torch(path)
    raise CheckpointError(f"unsupported checkpoint type {path.suffix!r}: use .safetensors or .pt/.pth/.ckpt")


def check_state(state: dict[str, torch.Tensor], model: nn.Module, meta: ModelMeta, path: Path) -> None:
    """Compare keys and shapes before loading, to say exactly what does not match."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs {meta.arch} {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if not (missing or unexpected or shapes):
        bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise CheckpointError(f"{path} holds non-finite weights (NaN or inf) in {bad[:3]}")
        return
    problems = []
    if missing or unexpected:
        problems.append(
            f"{len(missing)} weights missing (e.g. {missing[:3]}) and {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:3]}): is it a checkpoint of another architecture than {meta.arch!r}?"
        )
    if shapes:
        problems.append(f"shape mismatches: {'; '.join(shapes[:3])}")
        problems.append(f"the metadata lists {len(meta.classes)} classes {list(meta.classes)}; check the class count")
    raise CheckpointError(f"{path} does not match {meta.arch} with {len(meta.classes)} classes: " + " ".join(problems))


def load_checkpoint(
    path: str | os.PathLike,
    *,
    arch: str | None = None,
    classes: tuple[str, ...] | None = None,
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """Load a checkpoint safely into its architecture, in eval mode. `arch`/`classes`, when given, must match the
    checkpoint's metadata (they also fill in for foreign checkpoints without metadata only via the JSON sidecar)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    state, meta_dict = read_weights(path)
    meta_dict = meta_dict or _read_sidecar(path)
    if meta_dict is None:
        raise MissingCardError(
            f"{path} carries no metadata (architecture, classes, input size): import it with its architecture and "
            f"classes (Setup, or `python -m backend import-checkpoint`), or put them in {card_path(path).name}"
        )
    meta = ModelMeta.from_dict(meta_dict)
    if arch is not None and arch != meta.arch:
        raise CheckpointError(f"{path} is a {meta.arch} checkpoint, not {arch}")
    if classes is not None and tuple(classes) != meta.classes:
        raise CheckpointError(f"{path} predicts classes {list(meta.classes)}, not {list(classes)}")
    module = build_model(meta.arch, len(meta.classes))
    check_state(state, module, meta, path)
    module.load_state_dict(state)
    module.to(device).eval()
    projection = (meta.training.get("correction") or {}).get("projection")
    if projection:  # a P-ClArC model: re-attach its concept projection
        attach_projection(
            module, projection["layer"], torch.tensor(projection["h"]), torch.tensor(projection["offset"])
        )
    return LoadedModel(module=module, meta=meta, path=path, sha256=file_sha256(path))
