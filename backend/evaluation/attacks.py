"""Where an evaluation's attacked test images come from, so "accuracy with the artifact" exists on every dataset:
- `planted`: the dataset's planted (or a named registered) artifact drawn into every test image;
- `supplied`: the user's own attacked copy of the test images (another dataset, paired by sample id);
- `transplanted`: the artifact cut out of annotated training images (concept-heatmap masks, or mask files the user
  drew) and pasted into every test image, one donor per image and round (`data.transplant`).
`auto` takes the first that exists in this order."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from backend.attribution import concept_masks
from backend.concepts import Cav
from backend.data import (
    SPLITS,
    ClarcDataset,
    Donor,
    PairedAttack,
    SplitView,
    TransplantAttack,
    open_dataset,
    parse_spec,
    read_mask_files,
)
from backend.errors import ConfigError
from backend.evaluation.fidelity import TransplantCheck, check_transplant, unchecked
from backend.models import LoadedModel
from backend.options import check_choices, option

__all__ = ["AttackConfig", "AttackSource", "AttackedSet", "attacked_set", "describe_attack", "estimate_notice"]

AttackSource = Literal["auto", "planted", "supplied", "transplanted", "none"]


@dataclass(frozen=True)
class AttackConfig:
    """How the attacked test images are made (see the module docstring)."""

    attack: AttackSource = option(
        "auto",
        label="attacked images",
        help="where the test images with the artifact come from: auto (planted if the dataset plants an artifact, "
        "else the supplied attacked set, else transplanted from annotated training images), planted, supplied, "
        "transplanted, none",
    )
    attacked_dataset: str | None = option(
        None, help="dataset spec of the same test images with the artifact in them, paired by sample id"
    )
    transplant_rounds: int = option(3, help="transplant: donors per test image (each round pastes another one)")
    transplant_seed: int = option(0, help="transplant: random seed of the donor choice")
    artifact_masks: str | None = option(
        None, help="transplant: folder of artifact masks <sample id>.png drawn by hand (default: concept heatmaps)"
    )
    transplant_donors: int = option(256, help="transplant: at most this many annotated images to cut the artifact from")

    def __post_init__(self) -> None:
        check_choices(self)
        if self.transplant_rounds < 1 or self.transplant_donors < 1:
            raise ConfigError("transplant_rounds and transplant_donors must be at least 1")


@dataclass(frozen=True)
class AttackedSet:
    """The attacked test images of an evaluation: one view per round over the same samples (`indices` of the
    split), where they come from, a JSON-ready description (`detail`) and, for the transplant, the donor of each
    (sample, round) as an index (`donors`, (M, R), for the bootstrap over donors) and the check of the transplant
    (`check`, made with the model the set was built with; `check_for` another model)."""

    source: str
    views: tuple[SplitView, ...]
    indices: np.ndarray
    detail: dict
    donors: np.ndarray | None = None
    check: TransplantCheck | None = None
    recheck: Callable[[LoadedModel], TransplantCheck] | None = None
    built_with: int | None = None  # id of the module the set (and `check`) was made with
    sham: SplitView | None = None  # the same masks cut from images without the artifact, pasted the same way

    def check_for(self, model: LoadedModel) -> TransplantCheck | None:
        """The transplant's check for `model`: as made with the set's model, else made again on `model` against the
        artifact's effect on the set's model (a corrected model must still see pasted artifacts as natural ones)."""
        if self.recheck is None or self.built_with == id(model.module):
            return self.check
        return self.recheck(model)


def attacked_set(
    model: LoadedModel,
    dataset: ClarcDataset,
    cav: Cav | None,
    config: AttackConfig | None = None,
    *,
    split: str = "test",
    artifact: str | None = None,
    donor_ids: Collection[str] = (),
) -> AttackedSet | None:
    """The attacked images `config` asks for (None for source `none`, or for `auto` when nothing can attack).
    `artifact` names a registered artifact to plant; `donor_ids` are training samples annotated as showing it."""
    config = config or AttackConfig()
    norm = model.meta.normalization
    source = config.attack
    if source == "auto":
        if artifact or dataset.planting:
            source = "planted"
        elif config.attacked_dataset:
            source = "supplied"
        elif donor_ids and cav is not None:
            source = "transplanted"
        else:
            return None
    if source == "none":
        return None
    if source == "planted":
        view = dataset.split(split, "attacked", norm, artifact=artifact)
        return AttackedSet("planted", (view,), np.arange(len(view)), {"artifact": view.artifact})
    if source == "supplied":
        return _supplied(dataset, split, config, norm)
    return _transplanted(model, dataset, cav, config, split, donor_ids)


def _supplied(dataset: ClarcDataset, split: str, config: AttackConfig, norm) -> AttackedSet:
    if not config.attacked_dataset:
        raise ConfigError("the supplied attack needs an attacked dataset (a dataset spec)")
    spec = replace(parse_spec(config.attacked_dataset), size=dataset.image_size)
    other = open_dataset(spec)
    images_of = {}
    for other_split in SPLITS:
        view = other.split(other_split, "clean")
        images_of |= {sid: (view, i) for i, sid in enumerate(view.sample_ids)}
    base = dataset.split(split, "clean")
    pairs = {}
    for i, sid in enumerate(base.sample_ids):
        match = images_of.get(sid) or images_of.get(sid.removeprefix(f"{split}/"))
        if match is not None:
            pairs[i] = match
    if not pairs:
        raise ConfigError(
            f"no image of {spec.path} has the sample id of a {split} image (e.g. {base.sample_ids[0]}); the attacked "
            "copy needs the same file names"
        )
    attack = PairedAttack({base.sample_ids[i]: v.image(j) for i, (v, j) in pairs.items()}, str(spec))
    view = dataset.split(split, "attacked", norm, attack=attack)
    indices = np.array(sorted(pairs), dtype=np.int64)
    return AttackedSet("supplied", (view,), indices, {"dataset": str(spec), "paired": len(indices), "of": len(base)})


def _transplanted(
    model: LoadedModel, dataset: ClarcDataset, cav: Cav | None, config: AttackConfig, split: str, donor_ids
) -> AttackedSet:
    train = dataset.split("train")
    wanted = set(donor_ids)
    donors_at = [i for i, sid in enumerate(train.sample_ids) if sid in wanted]
    if not donors_at:
        raise ConfigError("the transplant attack needs training images annotated as showing the artifact")
    if len(donors_at) > config.transplant_donors:
        donors_at = sorted(
            np.random.default_rng(config.transplant_seed).choice(donors_at, config.transplant_donors, replace=False)
        )
    ids = [train.sample_ids[i] for i in donors_at]
    if config.artifact_masks:
        by_id = read_mask_files(config.artifact_masks, ids, dataset.image_size)
        donors_at = [i for i, sid in zip(donors_at, ids) if sid in by_id]
        masks = np.stack([by_id[train.sample_ids[i]] for i in donors_at])
        mask_source = f"mask files in {config.artifact_masks}"
    else:
        if cav is None:
            raise ConfigError("the transplant attack needs a CAV to find the artifact in the donor images")
        masks = concept_masks(model, train, donors_at, cav.vector, cav.layer)
        mask_source = f"concept heatmaps of the CAV in {cav.layer}"
    donors = [Donor(train.sample_ids[i], train.image(i), m) for i, m in zip(donors_at, masks)]
    views = tuple(
        dataset.split(
            split,
            "attacked",
            model.meta.normalization,
            attack=TransplantAttack(donors, seed=config.transplant_seed, round=r),
        )
        for r in range(config.transplant_rounds)
    )
    pairs = {sid: [v.attack.donor_for(sid).sample_id for v in views] for sid in views[0].sample_ids}
    position = {d.sample_id: n for n, d in enumerate(views[0].attack.donors)}
    detail = {
        "donors": len([d for d in donors if d.mask.any()]),
        "rounds": config.transplant_rounds,
        "seed": config.transplant_seed,
        "masks": mask_source,
        "mean_mask_share": float(masks.mean()),
        "donor_ids": [d.sample_id for d in donors],
        "pairs": pairs,
    }
    donor_index = np.array([[position[d] for d in pairs[sid]] for sid in views[0].sample_ids], dtype=np.int64)
    sham_donors = _sham_donors(train, views[0].attack.donors, wanted, config.transplant_seed)
    sham = (
        dataset.split(split, "attacked", model.meta.normalization, attack=TransplantAttack(sham_donors, name="sham"))
        if sham_donors
        else None
    )
    recheck = _checker(model, dataset, cav, train, donors_at, wanted, views[0].attack, config.transplant_seed)
    check = recheck(model, None)
    return AttackedSet(
        "transplanted",
        views,
        np.arange(len(views[0])),
        detail,
        donor_index,
        check,
        lambda other: recheck(other, check),
        id(model.module),
        sham,
    )


def _sham_donors(train: SplitView, donors: Sequence[Donor], annotated: set[str], seed: int) -> list[Donor]:
    """Each donor's mask over a training image of the donor's class that is not annotated as showing the artifact
    (seeded), so pasting it moves the model only by what the masks carry besides the artifact."""
    rng = np.random.default_rng([seed, 1])
    by_class: dict[int, np.ndarray] = {}
    position = {sid: i for i, sid in enumerate(train.sample_ids)}
    sham = []
    for donor in donors:
        k = int(train.labels[position[donor.sample_id]])
        if k not in by_class:
            by_class[k] = np.array(
                [i for i in np.flatnonzero(train.labels == k) if train.sample_ids[i] not in annotated]
            )
        pool = by_class[k]
        if not len(pool):
            continue
        source = int(pool[rng.integers(len(pool))])
        sham.append(Donor(train.sample_ids[source], train.image(source), donor.mask))
    return sham


def _checker(model, dataset: ClarcDataset, cav: Cav | None, train: SplitView, donors_at, annotated, attack, seed: int):
    """The transplant's check (`fidelity`) for any model, on the training images of the class the artifact is tied
    to: the CAV's, else the class most donors belong to."""
    if cav is None:
        reason = "the check of the transplant needs a CAV; the masks were drawn by hand and no CAV was given"
        return lambda _model, _reference: unchecked(reason)
    labels = train.labels
    name = cav.attacked_class
    k = dataset.classes.index(name) if name in dataset.classes else int(np.bincount(labels[donors_at]).argmax())
    natural = np.array([i for i in donors_at if labels[i] == k], dtype=np.int64)
    ids = train.sample_ids
    targets = np.array([i for i in np.flatnonzero(labels == k) if ids[i] not in annotated], dtype=np.int64)
    pasted = dataset.split("train", "attacked", model.meta.normalization, attack=attack)
    return lambda model_, reference: check_transplant(
        model_, train, pasted, natural, targets, cav, k, seed=seed, reference=reference
    )


def describe_attack(figures) -> str:
    """Where an evaluation's attacked figures (an `EvaluationResult`) come from, in words."""
    source, detail = figures.attack_source, figures.attack or {}
    if source == "planted":
        return f"the planted {detail.get('artifact')} drawn into every test image"
    if source == "transplanted":
        return (
            f"the artifact cut from {detail.get('donors')} annotated training images ({detail.get('masks')}) and "
            f"pasted into every test image, {detail.get('rounds')} rounds: {figures.n_attacked} images"
        )
    if source == "supplied":
        paired = f"{detail.get('paired')} of {detail.get('of')} test images paired"
        return f"your attacked copy {detail.get('dataset')}: {paired}"
    return "no attacked test images: annotate training images that show the artifact, or supply an attacked copy"


def estimate_notice(figures) -> str | None:
    """What a reader must know about attacked figures (an `EvaluationResult`) that are an estimate: the transplant's
    check and, where it failed or could not be made, that the figures are unreliable and how to measure instead.
    None where the figures are measured (planted, supplied) or there are none."""
    if figures.attacked_acc is None or not figures.estimated:
        return None
    check = TransplantCheck.from_dict(figures.estimate_check or {"reliable": None, "reasons": ["no check was made"]})
    if check.reliable:
        return f"Estimated by transplant; {check.verdict()}."
    label = "Unreliable estimate" if check.reliable is False else "Unchecked estimate"
    return f"{label}: {'; '.join(check.reasons)}. {check.advice}"
