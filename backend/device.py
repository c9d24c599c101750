"""Device choice: CUDA when present and asked for (or on `auto`), the CPU otherwise."""

from __future__ import annotations

from typing import Literal

import torch

from backend.errors import ConfigError

__all__ = ["DeviceChoice", "resolve_device"]

DeviceChoice = Literal["auto", "cpu", "cuda"]


def resolve_device(choice: str = "auto") -> torch.device:
    """`auto` -> CUDA if available else CPU; `cuda` without a GPU is an error rather than a silent fallback."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' was requested but no CUDA GPU is available; use 'cpu' or 'auto'")
        return torch.device(choice)
    raise ConfigError(f"unknown device {choice!r}; use 'auto', 'cpu' or 'cuda'")
