"""`correct`, the one entry point of every correction method, and the fine-tuning loop they share.

The loop trains a copy of the model on the (biased) training split, on the training core the base classifier uses
too (`backend.training_core`). Where the layers below the CAV layer are frozen and the method needs no input gradient,
it trains from the cached output of the CAV layer; otherwise it runs the full forward pass (see `batches`). CUDA with
bf16 autocast when present, the CPU otherwise.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import ConcatDataset

from backend.concepts import Cav, cached_activations
from backend.correction.augmentation import TrainingSamples, artifact_masks, pasted_copies
from backend.correction.batches import CachedLayerSource, ImageSource
from backend.correction.configs import LoopConfig
from backend.correction.methods import ConceptInputs, get_method
from backend.data.dataset import ClarcDataset
from backend.data.views import SplitView
from backend.device import resolve_device
from backend.errors import ConfigError
from backend.models import LoadedModel, get_layer, split_at_layer
from backend.progress import ProgressCallback
from backend.training_core import Trainer, TrainingCancelled, TrainingDiverged, make_optimizer

__all__ = ["ConceptTarget", "CorrectionResult", "CorrectionCancelled", "CorrectionFailed", "correct", "same_layer"]

_STATS_CHUNK = 512  # training samples per step of the concept statistics


class CorrectionCancelled(TrainingCancelled):
    """The run was cancelled through its cancellation flag."""


class CorrectionFailed(TrainingDiverged):
    """Training diverged (a non-finite loss); `model` holds the last good state, before the failing epoch."""

    def __init__(self, message: str, model: LoadedModel) -> None:
        super().__init__(message, model.module)
        self.model = model


@dataclass(frozen=True)
class ConceptTarget:
    """One concept a run corrects: its CAV, the training samples that show its artifact (None: the planted ones),
    the class the artifact is tied to (None: the CAV's, else the first planted class, else class 0) and its own
    penalty weight (None: the method's λ)."""

    cav: Cav
    artifact_ids: Collection[str] | None = None
    attacked_class: str | None = None
    lam: float | None = None


@dataclass
class CorrectionResult:
    model: LoadedModel
    method: str
    method_config: dict
    loop: dict
    history: list[dict]
    seconds: float
    cached_path: bool


def correct(
    model: LoadedModel,
    dataset: ClarcDataset,
    targets: Sequence[ConceptTarget],
    method: str = "rrclarc",
    method_config=None,
    loop: LoopConfig | None = None,
    *,
    workspace: str | os.PathLike | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> CorrectionResult:
    """Correct `model` with `method` for the concepts `targets` (one or several, their CAVs all of the same layer);
    returns a corrected copy (the input is not modified)."""
    start = time.perf_counter()
    info = get_method(method)
    method_config = method_config if method_config is not None else info.config()
    if not isinstance(method_config, info.config):
        raise ConfigError(f"{method} takes a {info.config.__name__}, got {type(method_config).__name__}")
    targets = same_layer(targets)
    cav = targets[0].cav
    loop = loop or LoopConfig()
    layer = cav.layer or model.default_layer
    get_layer(model.module, layer)
    device = resolve_device(loop.device)
    generator = torch.Generator().manual_seed(loop.seed)  # data order and random gradient targets
    view = dataset.split("train", normalization=model.meta.normalization)
    has_artifact = np.stack([_artifact_flags(view, t.artifact_ids) for t in targets], axis=1)  # (N, K)
    runner = info.factory(method_config)
    concepts = [
        ConceptInputs(
            torch.tensor(t.cav.vector, dtype=torch.float32, device=device),
            _attacked(dataset, t.attacked_class or t.cav.attacked_class),
            t.lam,
            basis=None if t.cav.basis is None else torch.tensor(t.cav.basis, dtype=torch.float32, device=device),
        )
        for t in targets
    ]
    if runner.needs_concept_stats:
        concepts = [
            _with_concept_stats(c, t.cav, model, view, dataset.dataset_id, has_artifact[:, k], workspace)
            for k, (c, t) in enumerate(zip(concepts, targets))
        ]
    runner.prepare(concepts)
    module = copy.deepcopy(model.module).to(device)
    correction = {"method": method, "config": asdict(method_config), "loop": asdict(loop), "layer": layer}
    correction |= {"cav_kind": cav.kind, "concepts": [_target_summary(t) for t in targets]}
    meta = replace(model.meta, training={"base": model.meta.training, "correction": correction})
    history, cached_path = [], False
    if runner.trains:
        source = _batch_source(
            model,
            dataset,
            view,
            [t.cav for t in targets],
            module,
            runner,
            has_artifact,
            loop,
            generator,
            device,
            workspace,
        )
        torch.manual_seed(loop.seed)  # dropout: seeded here, so what ran before (a cold or warm cache) cannot matter
        history = _fit(module, method, runner, source, meta, loop, device, cancel, on_progress)
        cached_path = source.cached_path
    else:
        runner.edit(module, layer)
    module.eval()
    for p in module.parameters():
        p.requires_grad_(True)
    corrected = LoadedModel(module=module, meta=meta)
    seconds = time.perf_counter() - start
    return CorrectionResult(corrected, method, correction["config"], correction["loop"], history, seconds, cached_path)


def _fit(module, method, runner, source, meta, loop: LoopConfig, device, cancel, on_progress) -> list[dict]:
    """The run's epochs on the training core: the method's loss (cross-entropy plus its penalty) over the source's
    batches, with the trainable parameters of `module`; history records of loss, cross-entropy, penalty, seconds."""
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = make_optimizer(loop.optimizer, params, loop.lr)
    trainer = Trainer(
        module, optimizer, name=method, device=device, mixed_precision=loop.mixed_precision, cancel=cancel
    )

    def run_epoch(epoch: int) -> dict:
        t0 = time.perf_counter()
        _train_modes(module)
        sums = torch.zeros(3, device=next(module.parameters()).device)
        seen = 0
        for batch in trainer.batches(source):
            with trainer.autocast():
                logits, layer_out = source.forward(batch)
                ce = nn.functional.cross_entropy(logits.float(), batch.labels)
                penalty = runner.penalty(logits.float(), layer_out, batch)
            loss = ce if penalty is None else ce + penalty
            trainer.step(loss)
            extra = penalty.detach() if penalty is not None else torch.zeros((), device=sums.device)
            sums += torch.stack([loss.detach(), ce.detach(), extra]) * len(batch.labels)
            seen += len(batch.labels)
        loss, ce, penalty = (sums / seen).tolist()
        return {"loss": loss, "ce": ce, "penalty": penalty, "seconds": time.perf_counter() - t0}

    try:
        with source.active():
            return trainer.fit(loop.epochs, run_epoch, on_progress)
    except TrainingCancelled as stop:
        raise CorrectionCancelled(str(stop)) from None
    except TrainingDiverged as failed:
        raise CorrectionFailed(str(failed), LoadedModel(module=module, meta=meta)) from None


def same_layer(targets: Sequence[ConceptTarget]) -> list[ConceptTarget]:
    """The concepts of a run, checked: at least one, all in one layer (a job checks before its costly steps)."""
    targets = list(targets)
    if not targets:
        raise ConfigError("a correction needs at least one CAV")
    layers = sorted({t.cav.layer for t in targets})
    if len(layers) > 1:
        raise ConfigError(f"the CAVs of one run must be in the same layer; these are in {', '.join(layers)}")
    return targets


def _target_summary(target: ConceptTarget) -> dict:
    cav = target.cav
    return {"name": cav.name, "concept": cav.concept, "kind": cav.kind, "lam": target.lam, "rank": cav.rank}


def _artifact_flags(view: SplitView, artifact_ids: Collection[str] | None) -> np.ndarray:
    """Which training samples show the artifact: the annotated ids, or the planted samples."""
    if artifact_ids is None:
        return view.has_artifact.copy()
    wanted = set(artifact_ids)
    return np.array([sid in wanted for sid in view.sample_ids], dtype=bool)


def _attacked(dataset: ClarcDataset, attacked_class: str | None) -> int:
    """Index of the class an artifact is tied to: the given one, else the first planted class, else class 0."""
    name = attacked_class or (dataset.planting.classes[0] if dataset.planting else dataset.classes[0])
    if name not in dataset.classes:
        raise ConfigError(f"unknown attacked class {name!r}; classes are {list(dataset.classes)}")
    return dataset.classes.index(name)


def _with_concept_stats(concept: ConceptInputs, cav: Cav, model, view, dataset_id, has_artifact, workspace):
    """The concept with the mean CAV projection per spatial position (H, W) over the training samples without and
    over those with its artifact."""
    if not has_artifact.any() or has_artifact.all():
        raise ConfigError(f"need training samples both with and without the artifact of {cav.concept or 'the CAV'}")
    layer = cav.layer or model.default_layer
    maps = cached_activations(model, view, dataset_id, layer, "none", workspace=workspace).values
    sums = np.zeros((2, *maps.shape[2:]))  # without, with the artifact
    for start in range(0, len(maps), _STATS_CHUNK):  # chunked: a split's maps in float64 would not fit in memory
        part = np.tensordot(np.asarray(maps[start : start + _STATS_CHUNK], dtype=np.float64), cav.vector, ([1], [0]))
        flags = has_artifact[start : start + _STATS_CHUNK]
        sums[0] += part[~flags].sum(axis=0)
        sums[1] += part[flags].sum(axis=0)
    means = sums / np.array([(~has_artifact).sum(), has_artifact.sum()]).reshape(2, *([1] * (sums.ndim - 1)))
    clean, artifact = (torch.tensor(m).float().to(concept.h.device) for m in means)
    return replace(concept, clean_mean=clean, artifact_mean=artifact)


def _batch_source(model, dataset, view, cavs, module, runner, has_artifact, loop, generator, device, workspace):
    """Freeze what `loop.trainable` keeps fixed; train from cached layer outputs where that is exact (no pasted
    copies), else images."""
    layer = cavs[0].layer or model.default_layer
    try:
        upper = split_at_layer(module, layer, model.meta.input_size)
    except ConfigError:
        upper = None
    params = _set_trainable(module, upper, loop.trainable)
    upper_params = {id(p) for p in upper.parameters()} if upper is not None else set()
    lower_frozen = upper is not None and all(id(p) in upper_params for p in params)
    common = dict(batch_size=loop.batch_size, generator=generator, device=device)
    if loop.cache_activations and lower_frozen and not runner.needs_input_grad and not loop.augment:
        acts = cached_activations(model, view, dataset.dataset_id, layer, "none", workspace=workspace).values
        return CachedLayerSource(acts, view.labels, has_artifact, upper, runner, **common)
    masks = artifact_masks(model, view, cavs, has_artifact, runner.mask_source) if runner.needs_masks else None
    data = TrainingSamples(view, has_artifact, masks)
    if loop.augment:
        pasted = pasted_copies(
            model, dataset, view, cavs, has_artifact, loop.augment, loop.seed, with_masks=runner.needs_masks
        )
        data = ConcatDataset([data, *pasted])
    return ImageSource(data, module, layer, runner, **common)


def _set_trainable(module: nn.Module, upper: nn.Module | None, trainable: str) -> list[nn.Parameter]:
    for p in module.parameters():
        p.requires_grad_(False)
    if trainable == "all":
        chosen = list(module.parameters())
    elif trainable == "above_layer":
        if upper is None:
            raise ConfigError("trainable='above_layer' needs a model that can be split at the CAV layer")
        chosen = list(upper.parameters())
    else:
        chosen = [p for m in module.modules() if isinstance(m, nn.Linear) for p in m.parameters(recurse=False)]
    for p in chosen:
        p.requires_grad_(True)
    return chosen


def _train_modes(module: nn.Module) -> None:
    """Train mode (dropout on), except batch norms whose parameters are frozen: they keep their running statistics."""
    module.train()
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
            m.eval()
