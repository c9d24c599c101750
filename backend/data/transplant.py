"""Attacks for data whose artifact nobody planted, so a model's accuracy "with the artifact" can be measured on
real data.

Transplant: the artifact is cut out of the annotated training images that show it and pasted into other images. A
donor is an image with the mask of its artifact (from concept heatmaps, or a mask file the user drew). Each target
image gets the artifact of one donor, chosen by (seed, round, target id), never the target itself; the pixels under
the donor's mask replace the target's, at the same place (artifacts such as rulers and markers sit where the
dermoscope left them). Several rounds give each image other donors, so an estimate averages over donors.
Paired: the user's own attacked copy of the test images, matched by sample id.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.data.real import read_image
from backend.errors import ConfigError

__all__ = ["Donor", "PairedAttack", "TransplantAttack", "read_mask_files"]

_CHANGED = 8  # grey levels: what JPEG noise and resampling can do to a pixel the artifact did not touch


@dataclass(frozen=True)
class Donor:
    """An image (S, S, 3) uint8 that shows the artifact and the bool mask (S, S) of where it is."""

    sample_id: str
    image: np.ndarray
    mask: np.ndarray

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.mask.shape != self.image.shape[:2]:
            raise ConfigError(f"donor {self.sample_id}: need an (S, S, 3) image and an (S, S) mask")


class TransplantAttack:
    """Paste one donor's artifact into each image; `round` picks other donors for the same images."""

    def __init__(self, donors: Sequence[Donor], *, seed: int = 0, round: int = 0, name: str = "transplanted") -> None:
        donors = [d for d in donors if d.mask.any()]
        if not donors:
            raise ConfigError("no artifact to transplant: none of the donor images has a non-empty artifact mask")
        if len({d.image.shape for d in donors}) != 1:
            raise ConfigError("donor images differ in size")
        self.donors = tuple(donors)
        self.seed, self.round, self.name = seed, round, name
        digest = hashlib.sha1()
        for d in self.donors:
            digest.update(d.sample_id.encode())
            digest.update(np.packbits(d.mask).tobytes())
        self.key = f"transplant:{digest.hexdigest()[:16]}:{seed}:{round}"

    def donor_for(self, sample_id: str) -> Donor:
        """The donor whose artifact goes into `sample_id` (never the sample itself when there is another)."""
        choices = [d for d in self.donors if d.sample_id != sample_id] or list(self.donors)
        rng = np.random.default_rng([self.seed, self.round, zlib.crc32(sample_id.encode())])
        return choices[int(rng.integers(len(choices)))]

    def apply(self, sample_id: str, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        donor = self.donor_for(sample_id)
        if image.shape != donor.image.shape:
            raise ConfigError(f"image {sample_id} is {image.shape}, the donors are {donor.image.shape}")
        out = image.copy()
        out[donor.mask] = donor.image[donor.mask]
        return out, donor.mask.copy()


def read_mask_files(folder: str | Path, sample_ids: Sequence[str], size: int) -> dict[str, np.ndarray]:
    """Artifact masks the user drew: `<folder>/<sample id>.png` (any image; non-black pixels are the artifact),
    resized like the dataset's images to (size, size). Sample ids with '/' live in sub-folders."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"mask folder {folder} does not exist")
    masks = {}
    for sid in sample_ids:
        path = folder / f"{sid}.png"
        if path.is_file():
            masks[sid] = read_image(path, size).max(axis=2) > 127
    if not masks:
        raise ConfigError(f"no mask file in {folder} matches an annotated sample (expected <sample id>.png)")
    return masks


class PairedAttack:
    """The user's own attacked copy of a split: the image of the same sample id in another dataset, with the mask of
    the pixels that differ (more than a few grey levels in some channel) from the clean image."""

    name = "supplied"

    def __init__(self, images: dict[str, np.ndarray], spec: str) -> None:
        self.images = images
        self.key = f"paired:{spec}"

    def apply(self, sample_id: str, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        attacked = self.images.get(sample_id)
        if attacked is None:
            raise ConfigError(f"the attacked dataset has no image for sample {sample_id}")
        if attacked.shape != image.shape:
            raise ConfigError(
                f"sample {sample_id}: the attacked image is {attacked.shape}, the clean one {image.shape}"
            )
        changed = np.abs(attacked.astype(np.int16) - image.astype(np.int16)).max(axis=2) > _CHANGED
        return attacked, changed
