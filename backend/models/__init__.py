"""Models: the architecture registry (builder, canonizers, default layer) and safe, self-describing checkpoints."""

from backend.models.checkpoint import LoadedModel, ModelMeta, card_path, file_sha256, load_checkpoint, save_checkpoint
from backend.models.registry import (
    Architecture,
    CompactVGG,
    architecture_names,
    build_model,
    get_architecture,
    register_model,
)

__all__ = [
    "Architecture",
    "CompactVGG",
    "LoadedModel",
    "ModelMeta",
    "architecture_names",
    "build_model",
    "card_path",
    "file_sha256",
    "get_architecture",
    "load_checkpoint",
    "register_model",
    "save_checkpoint",
]
