"""Coverage of a CAV on a model: images with and without the artifact (planted, supplied or transplanted pairs, see
`attacks`) through the model, the change of a layer's activations between the two, and the share of it that the CAV
or its concept subspace holds (the math is `backend.concepts.coverage`). A CAV that covers little of the change
leaves the rest of the shortcut to a correction along it.

Each figure comes twice: on the changes pooled as the CAV is (`coverage`), and at every position of the layer's maps
(`position_coverage`), which is what RR-ClArC's penalty at every position sees; a change that differs from position
to position but cancels in the mean hides from the pooled figure only. A concept subspace is built from the changes
at every position, for that reason."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from backend.concepts import (
    Cav,
    ChangeStats,
    concept_basis,
    coverage,
    cross_coverage,
    leading_share,
    pool_activations,
)
from backend.data import ClarcDataset, SplitView, view_batch
from backend.errors import ConfigError
from backend.evaluation.attacks import AttackConfig, AttackedSet, attacked_set
from backend.models import LoadedModel, capture_layers, eval_mode

__all__ = [
    "LOW_COVERAGE",
    "MAX_PAIRS",
    "CavCoverage",
    "coverage_is_low",
    "cav_coverage",
    "paired_changes",
    "subspace_cav",
    "training_pairs",
]

log = logging.getLogger(__name__)

LOW_COVERAGE = 0.5  # below this share (pooled or at every position) a one-direction correction leaves most of it
MAX_PAIRS = 256  # pairs of images a coverage is measured on (a random choice where there are more)
_BATCH = 64
_Halves = tuple[ChangeStats, ChangeStats]


@dataclass(frozen=True)
class CavCoverage:
    """How much of the artifact's squared activation change in a CAV's layer lies along the CAV, on the changes
    pooled as the CAV is (`coverage`) and at every position (`position_coverage`); how much the leading direction of
    the changes alone holds (`leading_share`, `position_leading_share`: the most any one direction can cover); and,
    for a concept subspace of `rank` directions, the same along all of them (`subspace_coverage`,
    `subspace_position_coverage`; None at rank 1). Measured on `n_pairs` pairs of images of `split` with the
    artifact from `source` (planted, supplied, transplanted)."""

    layer: str
    pooling: str
    coverage: float
    leading_share: float
    position_coverage: float
    position_leading_share: float
    n_pairs: int
    source: str
    split: str
    rank: int = 1
    subspace_coverage: float | None = None
    subspace_position_coverage: float | None = None

    def summary_fields(self) -> dict:
        """The fields of a `CavSummary` that this coverage fills."""
        return {
            "coverage": self.coverage,
            "subspace_coverage": self.subspace_coverage,
            "coverage_detail": self.to_dict(),
        }

    def to_dict(self) -> dict:
        return asdict(self)


def coverage_is_low(detail: dict) -> bool:
    """Whether a stored coverage (`CavCoverage.to_dict()`) leaves most of the artifact's effect outside the CAV."""
    return min(detail["coverage"], detail["position_coverage"]) < LOW_COVERAGE


def training_pairs(
    model: LoadedModel,
    dataset: ClarcDataset,
    cav: Cav | None,
    attack: AttackConfig | None = None,
    donor_ids: Collection[str] = (),
) -> AttackedSet | None:
    """The training images with the artifact put in, from the source `attack` names (`none` reads as `auto`: the
    pairs are wanted even where the test figures are not). `auto` plants the dataset's artifact only where the
    annotated `donor_ids` (if any) are mostly its planted samples: annotations of another concept get their own
    artifact transplanted (one round: the pairs are many images, not many donors per image). A supplied copy
    without the training images falls back to transplanting from `donor_ids`. None where nothing can put the
    artifact in."""
    config = replace(attack or AttackConfig(), transplant_rounds=1)
    if config.attack == "none":
        config = replace(config, attack="auto")
    if config.attack == "auto" and dataset.planting and donor_ids and cav is not None:
        train = dataset.split("train")
        planted = {sid for sid, flag in zip(train.sample_ids, train.has_artifact) if flag}
        if len(planted & set(donor_ids)) < len(donor_ids) / 2:
            config = replace(config, attack="transplanted")
    try:
        return attacked_set(model, dataset, cav, config, split="train", donor_ids=donor_ids)
    except ConfigError as exc:
        if not config.attacked_dataset or not donor_ids or cav is None or config.attack == "transplanted":
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
    the same images: (N, C) pooled (`max`, `mean`), (N, C, H, W) unpooled (`none`). In memory: for a few pairs."""
    chunks = []
    pairs = [(attacked_view, np.asarray(indices, np.int64))]
    for before, after in _passes(model, clean_view, pairs, [layer], batch_size):
        chunks.append((pool_activations(after[layer], pooling) - pool_activations(before[layer], pooling)).numpy())
    return np.concatenate(chunks)


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
    artifact already: no clean half for them, so they are left out, unless the artifact is planted. A CAV's basis
    is measured as it is."""
    cavs = [cavs] if isinstance(cavs, Cav) else list(cavs)
    clean, pairs = _pairs(dataset, model, attacked, artifact_ids, max_pairs, seed)
    stats = _change_stats(model, clean, pairs, {_where(model, c) for c in cavs}, seed)
    results = []
    for cav in cavs:
        pooled, maps = (stats[_where(model, cav) + (kind,)] for kind in ("pooled", "maps"))
        subspace = None if cav.basis is None else tuple(coverage(s[0] + s[1], cav.basis) for s in (pooled, maps))
        results.append(_measured(cav, pooled, maps, attacked, clean.split, subspace))
    return results


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
    """`cav` with a concept subspace of `rank` directions (`concept_basis` of the changes at every position: the
    CAV, then the leading directions of the changes beside it) and its coverage; the subspace's own coverage is
    measured on pairs it was not built from (`cross_coverage`), so it does not flatter."""
    clean, pairs = _pairs(dataset, model, attacked, artifact_ids, max_pairs, seed)
    where = _where(model, cav)
    stats = _change_stats(model, clean, pairs, {where}, seed)
    pooled, maps = stats[where + ("pooled",)], stats[where + ("maps",)]
    widened = cav.with_basis(concept_basis(cav.vector, maps[0] + maps[1], rank))
    subspace = (cross_coverage(cav.vector, maps, rank, pooled), cross_coverage(cav.vector, maps, rank))
    return widened, _measured(widened, pooled, maps, attacked, clean.split, subspace)


def _where(model: LoadedModel, cav: Cav) -> tuple[str, str]:
    return cav.layer or model.default_layer, cav.pooling


def _measured(
    cav: Cav,
    pooled: _Halves,
    maps: _Halves,
    attacked: AttackedSet,
    split: str,
    subspace: tuple[float, float] | None,
) -> CavCoverage:
    pooled_all, maps_all = pooled[0] + pooled[1], maps[0] + maps[1]
    return CavCoverage(
        layer=cav.layer,
        pooling=cav.pooling,
        coverage=coverage(pooled_all, cav.vector),
        leading_share=leading_share(pooled_all),
        position_coverage=coverage(maps_all, cav.vector),
        position_leading_share=leading_share(maps_all),
        n_pairs=pooled_all.rows,
        source=attacked.source,
        split=split,
        rank=cav.rank,
        subspace_coverage=None if subspace is None else subspace[0],
        subspace_position_coverage=None if subspace is None else subspace[1],
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
    if len(chosen) < 4:
        raise ConfigError(f"coverage needs at least 4 {split} images to pair with and without the artifact")
    if len(chosen) > max_pairs:
        picks = np.random.default_rng(seed).choice(len(chosen), max_pairs, replace=False)
        chosen = [chosen[k] for k in sorted(picks)]
    rounds = {r: np.array([i for q, i in chosen if q == r], dtype=np.int64) for r, _ in chosen}
    return clean, [(attacked.views[r], idx) for r, idx in rounds.items()]


def _change_stats(
    model: LoadedModel,
    clean: SplitView,
    pairs: Sequence[tuple[SplitView, np.ndarray]],
    wanted: Collection[tuple[str, str]],
    seed: int,
) -> dict[tuple[str, str, str], _Halves]:
    """The statistics of the changes per (layer, pooling) and kind ("pooled" as the CAV is, "maps" at every
    position), each in two random halves of the pairs (for held-out figures), summed batch by batch."""
    n = sum(len(idx) for _, idx in pairs)
    half = np.zeros(n, dtype=bool)
    half[np.random.default_rng(seed).permutation(n)[: n // 2]] = True
    found: dict[tuple[str, str, str], list[ChangeStats | None]] = {
        (layer, pooling, kind): [None, None] for layer, pooling in wanted for kind in ("pooled", "maps")
    }
    done = 0
    layers = sorted({layer for layer, _ in wanted})
    for before, after in _passes(model, clean, pairs, layers, _BATCH):
        in_first = half[done : done + len(next(iter(before.values())))]
        done += len(in_first)
        for layer, pooling in wanted:
            changes = {"maps": after[layer] - before[layer]}
            changes["pooled"] = pool_activations(after[layer], pooling) - pool_activations(before[layer], pooling)
            for kind, delta in changes.items():
                for k, rows in enumerate((delta[torch.from_numpy(in_first)], delta[torch.from_numpy(~in_first)])):
                    if len(rows):
                        slot = found[(layer, pooling, kind)]
                        part = ChangeStats.of(rows.numpy())
                        slot[k] = part if slot[k] is None else slot[k] + part
    if any(s is None for halves in found.values() for s in halves):
        raise ConfigError("coverage needs pairs in both halves: at least 4 pairs")
    return {key: (halves[0], halves[1]) for key, halves in found.items()}


def _passes(
    model: LoadedModel,
    clean: SplitView,
    pairs: Sequence[tuple[SplitView, np.ndarray]],
    layers: Sequence[str],
    batch_size: int,
):
    """Per batch of pairs, the layers' outputs (float32, on the CPU) on the clean and on the attacked images."""
    module = model.module
    device = next(module.parameters()).device
    norm = model.meta.normalization
    with eval_mode(module), capture_layers(module, list(layers)) as captured, torch.no_grad():
        for attacked_view, indices in pairs:
            for start in range(0, len(indices), batch_size):
                part = indices[start : start + batch_size]
                outs = []
                for view in (clean, attacked_view):
                    x, _ = view_batch(view, part, norm)
                    module(x.to(device))
                    outs.append({name: captured[name].pop().float().cpu() for name in layers})
                    for name in layers:
                        captured[name].clear()
                yield outs[0], outs[1]
