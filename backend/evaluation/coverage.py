"""Coverage of a CAV on a model: images with and without the artifact (planted, supplied or transplanted pairs, see
`attacks`) through the model, the change of a layer's activations between the two, and the share of it that the CAV
or its concept subspace holds (the math is `backend.concepts.coverage`). A CAV that covers little of the change
leaves the rest of the shortcut to a correction along it."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from backend.concepts import Cav, concept_basis, coverage, held_out_coverage, leading_share, pool_activations
from backend.data import ClarcDataset, SplitView, view_batch
from backend.errors import ConfigError
from backend.evaluation.attacks import AttackConfig, AttackedSet, attacked_set
from backend.models import LoadedModel, capture_layers, eval_mode

__all__ = ["MAX_PAIRS", "CavCoverage", "cav_coverage", "paired_changes", "subspace_cav", "training_pairs"]

log = logging.getLogger(__name__)

MAX_PAIRS = 512  # pairs of images a coverage is measured on (a random choice where there are more)
_BATCH = 64


@dataclass(frozen=True)
class CavCoverage:
    """How much of the artifact's squared activation change in a CAV's layer lies along the CAV (`coverage`) and
    along its concept subspace of `rank` directions (`subspace_coverage`; None at rank 1), and how much the leading
    direction of the changes alone holds (`leading_share`: the most any one direction can cover), measured on
    `n_pairs` pairs of images of `split` with the artifact from `source` (planted, supplied, transplanted)."""

    layer: str
    pooling: str
    coverage: float
    leading_share: float
    n_pairs: int
    source: str
    split: str
    rank: int = 1
    subspace_coverage: float | None = None

    @property
    def pairs(self) -> dict:
        """How the coverage was measured, JSON-ready (a CAV summary's `coverage_pairs`)."""
        return {"source": self.source, "split": self.split, "n": self.n_pairs, "leading_share": self.leading_share}

    def summary_fields(self) -> dict:
        """The fields of a `CavSummary` that this coverage fills."""
        return {"coverage": self.coverage, "subspace_coverage": self.subspace_coverage, "coverage_pairs": self.pairs}

    def to_dict(self) -> dict:
        return asdict(self)


def training_pairs(
    model: LoadedModel,
    dataset: ClarcDataset,
    cav: Cav | None,
    attack: AttackConfig | None = None,
    donor_ids: Collection[str] = (),
) -> AttackedSet | None:
    """The training images with the artifact put in, from the source `attack` names (`none` reads as `auto`: the
    pairs are wanted even where the test figures are not). A supplied copy without the training images falls back
    to transplanting the artifact from `donor_ids`. None where nothing can put the artifact in."""
    config = attack or AttackConfig()
    if config.attack == "none":
        config = replace(config, attack="auto")
    try:
        return attacked_set(model, dataset, cav, config, split="train", donor_ids=donor_ids)
    except ConfigError as exc:
        if not config.attacked_dataset or not donor_ids or cav is None or dataset.planting:
            raise
        log.info("no supplied training pairs (%s); transplanting the artifact into training images instead", exc)
        transplanted = replace(config, attack="transplanted")
        return attacked_set(model, dataset, cav, transplanted, split="train", donor_ids=donor_ids)


def paired_changes(
    model: LoadedModel,
    clean_view: SplitView,
    attacked_view: SplitView,
    indices: Sequence[int],
    layer: str,
    pooling: str,
    *,
    batch_size: int = _BATCH,
) -> np.ndarray:
    """The change a(x with the artifact) − a(x) of `layer`'s activations for the samples `indices` of two views of
    the same images: (N, C) pooled (`max`, `mean`), (N, C, H, W) unpooled (`none`)."""
    pairs = [(attacked_view, np.asarray(indices, dtype=np.int64))]
    return _changes(model, clean_view, pairs, [(layer, pooling)], batch_size)[(layer, pooling)]


def cav_coverage(
    model: LoadedModel,
    dataset: ClarcDataset,
    cavs: Cav | Sequence[Cav],
    attacked: AttackedSet,
    *,
    artifact_ids: Collection[str] = (),
    max_pairs: int = MAX_PAIRS,
    seed: int = 0,
) -> list[CavCoverage]:
    """The coverage of each CAV (each in its own layer and pooling: one per layer measures a layer sweep) on the
    pairs of `attacked` (up to `max_pairs`, one forward pass for all). `artifact_ids` are samples that show the
    artifact already: no clean half for them, so they are left out, unless the artifact is planted."""
    cavs = [cavs] if isinstance(cavs, Cav) else list(cavs)
    clean, pairs = _pairs(dataset, model, attacked, artifact_ids, max_pairs, seed)
    wanted = sorted({(c.layer or model.default_layer, c.pooling) for c in cavs})
    changes = _changes(model, clean, pairs, wanted, _BATCH)
    return [_measured(c, changes[(c.layer or model.default_layer, c.pooling)], attacked, clean.split) for c in cavs]


def subspace_cav(
    model: LoadedModel,
    dataset: ClarcDataset,
    cav: Cav,
    attacked: AttackedSet,
    rank: int,
    *,
    artifact_ids: Collection[str] = (),
    max_pairs: int = MAX_PAIRS,
    seed: int = 0,
) -> tuple[Cav, CavCoverage]:
    """`cav` with a concept subspace of `rank` directions (`concept_basis`: the CAV, then the leading directions of
    the paired changes beside it) and its coverage; the subspace's own coverage is measured on pairs it was not
    built from (`held_out_coverage`), so it does not flatter."""
    clean, pairs = _pairs(dataset, model, attacked, artifact_ids, max_pairs, seed)
    layer = cav.layer or model.default_layer
    changes = _changes(model, clean, pairs, [(layer, cav.pooling)], _BATCH)[(layer, cav.pooling)]
    widened = cav.with_basis(concept_basis(cav.vector, changes, rank))
    return widened, _measured(widened, changes, attacked, clean.split, built_here=True, seed=seed)


def _measured(
    cav: Cav, changes: np.ndarray, attacked: AttackedSet, split: str, *, built_here: bool = False, seed: int = 0
) -> CavCoverage:
    """The coverage of `cav` on `changes`; a basis built from these very changes (`built_here`) is measured held
    out, a basis brought along as it is."""
    if cav.basis is None:
        sub = None
    elif built_here:
        sub = held_out_coverage(cav.vector, changes, cav.rank, seed=seed)
    else:
        sub = coverage(changes, cav.basis)
    return CavCoverage(
        layer=cav.layer,
        pooling=cav.pooling,
        coverage=coverage(changes, cav.vector),
        leading_share=leading_share(changes),
        n_pairs=len(changes),
        source=attacked.source,
        split=split,
        rank=cav.rank,
        subspace_coverage=sub,
    )


def _pairs(
    dataset: ClarcDataset,
    model: LoadedModel,
    attacked: AttackedSet,
    artifact_ids: Collection[str],
    max_pairs: int,
    seed: int,
) -> tuple[SplitView, list[tuple[SplitView, np.ndarray]]]:
    """The clean view of the attacked images' split and, per attacked view (a transplant's round), the samples to
    pair: those without the artifact of their own, at most `max_pairs` in all (a seeded random choice)."""
    split = attacked.views[0].split
    clean = dataset.split(split, "clean", model.meta.normalization)
    skip = set() if attacked.source == "planted" else set(artifact_ids)
    usable = np.array([i for i in attacked.indices if clean.sample_ids[i] not in skip], dtype=np.int64)
    chosen = [(r, i) for r in range(len(attacked.views)) for i in usable]
    if len(chosen) < 2:
        raise ConfigError(f"coverage needs at least 2 {split} images to pair with and without the artifact")
    if len(chosen) > max_pairs:
        picks = np.random.default_rng(seed).choice(len(chosen), max_pairs, replace=False)
        chosen = [chosen[k] for k in sorted(picks)]
    rounds = {r: np.array([i for q, i in chosen if q == r], dtype=np.int64) for r, _ in chosen}
    return clean, [(attacked.views[r], idx) for r, idx in rounds.items()]


def _changes(
    model: LoadedModel,
    clean: SplitView,
    pairs: Sequence[tuple[SplitView, np.ndarray]],
    wanted: Sequence[tuple[str, str]],
    batch_size: int,
) -> dict[tuple[str, str], np.ndarray]:
    """Activation changes (attacked − clean) per (layer, pooling) of every pair, in the order of `pairs`."""
    module = model.module
    device = next(module.parameters()).device
    norm = model.meta.normalization
    layers = sorted({layer for layer, _ in wanted})
    found: dict[tuple[str, str], list[np.ndarray]] = {w: [] for w in wanted}
    with eval_mode(module), capture_layers(module, layers) as captured, torch.no_grad():
        for attacked_view, indices in pairs:
            for start in range(0, len(indices), batch_size):
                part = indices[start : start + batch_size]
                outs = []
                for view in (clean, attacked_view):
                    x, _ = view_batch(view, part, norm)
                    module(x.to(device))
                    outs.append({name: captured[name].pop() for name in layers})
                    for name in layers:
                        captured[name].clear()
                for layer, pooling in wanted:
                    before, after = (pool_activations(o[layer].float(), pooling) for o in outs)
                    found[(layer, pooling)].append((after - before).cpu().numpy())
    return {w: np.concatenate(chunks) for w, chunks in found.items()}
