"""Dataset specs: one string names a dataset in the CLI, the app, run records and model cards.

    synthderm                                  the embedded benchmark as the default model was trained on it
    synthderm?artifact=ruler&p=0.3&classes=nevus,melanoma&seed=1&size=64&n_train=3000
    synthderm?artifact=none                    the embedded images without any planted artifact
    isic:/data/isic2019                        ISIC challenge layout (images + ground-truth CSV)
    folder:/data/lesions?size=128              one sub-folder per class (optionally under train/val/test)
    boneage:/data/rsna-bone-age?bins=5         RSNA Bone Age; classes are equal-width bins of the bone age
    celeba:/data/celeba?attribute=Blond_Hair   CelebA; two classes: without / with the attribute
    imagenet:/data/ILSVRC?wnids=n01440764,n02102040   ImageNet (ILSVRC layout), a subset of its classes

Real datasets take the same `artifact`, `p`, `classes` parameters to plant a controlled artifact.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Literal, get_args
from urllib.parse import parse_qsl

from backend.data.artifacts import get_artifact
from backend.errors import ConfigError
from backend.storage.paths import check_allowed_path

__all__ = ["DatasetKind", "DatasetSpec", "parse_spec", "check_allowed_spec", "DEFAULT_PLANTING_P"]

DatasetKind = Literal["synthderm", "isic", "folder", "boneage", "celeba", "imagenet"]

# The embedded benchmark: surgical-ink markers in a share of the melanoma training images.
DEFAULT_ARTIFACT = "skin_marker"
DEFAULT_PLANTING_CLASSES = ("melanoma",)
DEFAULT_PLANTING_P = 0.3
_SYNTHDERM_SIZES = {"n_train": 3000, "n_val": 600, "n_test": 900}


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed dataset spec. `artifact=None` plants nothing; sizes n_* apply to the embedded generator only."""

    kind: DatasetKind
    path: str | None = None
    artifact: str | None = None
    p: float = DEFAULT_PLANTING_P
    classes: tuple[str, ...] = DEFAULT_PLANTING_CLASSES
    seed: int = 0
    size: int = 64
    n_train: int = _SYNTHDERM_SIZES["n_train"]
    n_val: int = _SYNTHDERM_SIZES["n_val"]
    n_test: int = _SYNTHDERM_SIZES["n_test"]
    bins: int = 5
    attribute: str = "Blond_Hair"
    wnids: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in get_args(DatasetKind):
            raise ConfigError(f"unknown dataset kind {self.kind!r}; use one of {get_args(DatasetKind)}")
        if self.kind == "synthderm" and self.path:
            raise ConfigError("synthderm is generated and takes no path")
        if self.kind != "synthderm" and not self.path:
            raise ConfigError(f"{self.kind} datasets need a folder: '{self.kind}:/path/to/folder'")
        if self.artifact is not None:
            get_artifact(self.artifact)
        if not 0.0 <= self.p <= 1.0:
            raise ConfigError(f"p must be in [0, 1], got {self.p}")
        if not 16 <= self.size <= 1024:
            raise ConfigError(f"size must be between 16 and 1024 pixels, got {self.size}")
        for name in ("n_train", "n_val", "n_test"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 2 <= self.bins <= 50:
            raise ConfigError(f"bins must be between 2 and 50, got {self.bins}")
        if self.extra:
            raise ConfigError(f"unknown dataset spec parameters: {', '.join(sorted(self.extra))}")

    def __str__(self) -> str:
        """The canonical spec string: every parameter spelled out, so equal datasets have equal strings."""
        head = self.kind if self.path is None else f"{self.kind}:{self.path}"
        params = {"artifact": self.artifact or "none"}
        if self.artifact:
            params |= {"p": f"{self.p:g}", "classes": ",".join(self.classes)}
        params |= {"seed": str(self.seed), "size": str(self.size)}
        if self.kind == "synthderm":
            params |= {name: str(getattr(self, name)) for name in _SYNTHDERM_SIZES}
        params |= {
            "boneage": {"bins": str(self.bins)},
            "celeba": {"attribute": self.attribute},
            "imagenet": {"wnids": ",".join(self.wnids)} if self.wnids else {},
        }.get(self.kind, {})
        return head + "?" + "&".join(f"{k}={v}" for k, v in params.items())

    @property
    def dataset_id(self) -> str:
        """A short stable id of the images and planting, for cache keys and annotation stores."""
        return hashlib.sha1(str(self).encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("extra")
        data["classes"] = list(self.classes)
        data["wnids"] = list(self.wnids)
        return data


def _parse_value(name: str, raw: str):
    try:
        if name in ("seed", "size", "n_train", "n_val", "n_test", "bins"):
            return int(raw)
        if name == "p":
            return float(raw)
    except ValueError:
        raise ConfigError(f"dataset parameter {name}={raw!r} is not a number") from None
    if name in ("classes", "wnids"):
        return tuple(c.strip() for c in raw.split(",") if c.strip())
    if name == "artifact":
        return None if raw.lower() in ("", "none") else raw
    return raw


def parse_spec(spec: str | DatasetSpec) -> DatasetSpec:
    """Parse a dataset spec string (see the module docstring); a DatasetSpec passes through unchanged."""
    if isinstance(spec, DatasetSpec):
        return spec
    text = spec.strip()
    head, _, query = text.partition("?")
    kind, sep, path = head.partition(":")
    kind = kind.strip().lower()
    if kind not in get_args(DatasetKind):
        raise ConfigError(f"cannot read dataset spec {spec!r}: it must start with one of {get_args(DatasetKind)}")
    known = {f.name for f in fields(DatasetSpec)} - {"kind", "path", "extra"}
    params: dict = {}
    extra: dict = {}
    for name, raw in parse_qsl(query, keep_blank_values=True):
        if name in known:
            params[name] = _parse_value(name, raw)
        else:
            extra[name] = raw
    if kind == "synthderm":
        params.setdefault("artifact", DEFAULT_ARTIFACT)
    folder = path.strip() if sep else ""
    return DatasetSpec(kind=kind, path=folder or None, extra=extra, **params)


def check_allowed_spec(spec: str | DatasetSpec, workspace: str | os.PathLike | None = None) -> DatasetSpec:
    """A dataset spec whose folder (for `isic:` and `folder:`) lies inside the allowed roots of a served dashboard."""
    spec = parse_spec(spec)
    if spec.path:
        check_allowed_path(spec.path, "dataset folder", workspace)
    return spec
