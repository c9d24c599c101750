"""What ClArC Studio opens out of the box: the shipped biased default model and the embedded benchmark."""

from pathlib import Path

__all__ = ["ASSETS_DIR", "DEFAULT_CHECKPOINT", "DEFAULT_DATASET"]

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_CHECKPOINT = ASSETS_DIR / "default_model.safetensors"
DEFAULT_DATASET = "synthderm"
