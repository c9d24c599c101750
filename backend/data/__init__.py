"""Datasets: the embedded SynthDerm benchmark, planted artifacts, ISIC, image folders and the seed paper's other
datasets (Bone Age, CelebA, ImageNet), attacks, dataset specs."""

from __future__ import annotations

import os

from backend.data.artifacts import ArtifactInfo, apply_artifact, artifact_names, get_artifact, register_artifact
from backend.data.batches import image_batch, view_batch
from backend.data.dataset import ClarcDataset
from backend.data.embedded import SynthDermDataset, generate_split
from backend.data.public import BoneAgeDataset, CelebADataset, ImageNetDataset
from backend.data.real import ImageFolderDataset, ISICDataset, read_image
from backend.data.spec import DEFAULT_PLANTING_P, DatasetSpec, check_allowed_spec, parse_spec
from backend.data.synthderm import SYNTHDERM_CLASSES, render_sample
from backend.data.transplant import Donor, PairedAttack, TransplantAttack, read_mask_files
from backend.data.views import SPLITS, VIEWS, Attack, Normalization, PlantedAttack, Planting, SplitView
from backend.storage.workspace import cache_dir

__all__ = [
    "image_batch",
    "view_batch",
    "BoneAgeDataset",
    "CelebADataset",
    "ImageNetDataset",
    "Attack",
    "Donor",
    "PairedAttack",
    "PlantedAttack",
    "TransplantAttack",
    "read_mask_files",
    "ArtifactInfo",
    "ClarcDataset",
    "DEFAULT_PLANTING_P",
    "DatasetSpec",
    "ISICDataset",
    "ImageFolderDataset",
    "Normalization",
    "Planting",
    "SPLITS",
    "SYNTHDERM_CLASSES",
    "SplitView",
    "SynthDermDataset",
    "VIEWS",
    "apply_artifact",
    "artifact_names",
    "check_allowed_spec",
    "generate_split",
    "get_artifact",
    "open_dataset",
    "parse_spec",
    "read_image",
    "register_artifact",
    "render_sample",
]


def open_dataset(
    spec: str | DatasetSpec, workspace: str | os.PathLike | None = None, cache: bool = True
) -> ClarcDataset:
    """Open the dataset a spec names; the embedded one is generated once and cached in the workspace."""
    spec = parse_spec(spec)
    if spec.kind == "synthderm":
        return SynthDermDataset(spec, cache_dir("synthderm", workspace) if cache else None)
    loaders = {
        "isic": ISICDataset,
        "folder": ImageFolderDataset,
        "boneage": BoneAgeDataset,
        "celeba": CelebADataset,
        "imagenet": ImageNetDataset,
    }
    dataset = loaders[spec.kind](spec)
    if cache:
        dataset.keep_decoded(cache_dir("decoded", workspace))
    return dataset
