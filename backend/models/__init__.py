"""Models: the architecture registry (builder, canonizers, default layer), safe self-describing checkpoints, layers
by name, the module lock, and the concept projection a P-ClArC model carries."""

from backend.models.checkpoint import (
    LoadedModel,
    MissingCardError,
    ModelMeta,
    card_path,
    file_sha256,
    load_checkpoint,
    model_fingerprint,
    save_checkpoint,
)
from backend.models.importing import IMAGENET_NORMALIZATION, import_checkpoint, strip_prefix
from backend.models.layers import (
    LayerInfo,
    candidate_layers,
    capture_layer,
    capture_layers,
    eval_mode,
    get_layer,
    output_layer,
)
from backend.models.locking import module_lock
from backend.models.projection import (
    ConceptProjection,
    attach_projection,
    find_projection,
    project_along,
    project_onto,
)
from backend.models.registry import (
    Architecture,
    CompactVGG,
    architecture_names,
    build_model,
    get_architecture,
    register_model,
)
from backend.models.split import split_at_layer

__all__ = [
    "IMAGENET_NORMALIZATION",
    "MissingCardError",
    "import_checkpoint",
    "strip_prefix",
    "Architecture",
    "CompactVGG",
    "ConceptProjection",
    "LayerInfo",
    "LoadedModel",
    "ModelMeta",
    "architecture_names",
    "attach_projection",
    "build_model",
    "candidate_layers",
    "capture_layer",
    "capture_layers",
    "card_path",
    "eval_mode",
    "file_sha256",
    "find_projection",
    "get_architecture",
    "get_layer",
    "load_checkpoint",
    "model_fingerprint",
    "module_lock",
    "output_layer",
    "project_along",
    "project_onto",
    "register_model",
    "save_checkpoint",
    "split_at_layer",
]
