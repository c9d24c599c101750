"""The shared fine-tuning loop of every correction method, and `correct`, the one entry point.

The loop trains a copy of the model on the (biased) training split. Where the layers below the CAV layer are frozen
and the method needs no input gradient, it trains from the cached output of the CAV layer (exact: those layers
compute the same thing every epoch, and there is no augmentation); otherwise it runs the full forward pass with a
scoped hook at the CAV layer. CUDA with bf16 autocast when present, the CPU otherwise.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from backend.activations import cached_activations, get_layer
from backend.attribution import concept_heatmaps, view_batch
from backend.cav import Cav
from backend.correction.configs import LoopConfig
from backend.correction.methods import Batch, CorrectionMethod, attach_projection, get_method
from backend.data.dataset import ClarcDataset
from backend.data.views import SplitView
from backend.device import resolve_device
from backend.errors import ClarcError, ConfigError
from backend.masks import heatmap_masks
from backend.models.checkpoint import LoadedModel
from backend.models.split import split_at_layer
from backend.progress import ProgressCallback, ProgressEvent

__all__ = ["CorrectionResult", "CorrectionCancelled", "CorrectionFailed", "correct"]

log = logging.getLogger(__name__)


class CorrectionCancelled(ClarcError):
    """The run was cancelled through its cancellation flag."""


class CorrectionFailed(ClarcError):
    """Training diverged (a non-finite loss); `model` holds the last good state, before the failing epoch."""

    def __init__(self, message: str, model: LoadedModel) -> None:
        super().__init__(message)
        self.model = model


@dataclass
class CorrectionResult:
    model: LoadedModel
    method: str
    method_config: dict
    loop: dict
    history: list[dict]
    seconds: float
    cached_path: bool


class _Images(Dataset):
    """Training samples for the full-forward path: image, label, artifact flag and (for RRR) artifact mask."""

    def __init__(self, view: SplitView, has_artifact: np.ndarray, masks: np.ndarray | None) -> None:
        self.view, self.has_artifact, self.masks = view, has_artifact, masks

    def __len__(self) -> int:
        return len(self.view)

    def __getitem__(self, i: int):
        mask = torch.from_numpy(self.masks[i].astype(np.float32)) if self.masks is not None else torch.zeros(0)
        return self.view[i][0], int(self.view.labels[i]), bool(self.has_artifact[i]), mask


def _cached_batches(
    acts: np.ndarray, labels: np.ndarray, has_artifact: np.ndarray, batch_size: int, generator: torch.Generator
) -> Iterator[tuple]:
    """Shuffled batches straight from the cached layer outputs (a memory-mapped array): no per-sample overhead."""
    order = torch.randperm(len(labels), generator=generator).numpy()
    for start in range(0, len(order), batch_size):
        idx = np.sort(order[start : start + batch_size])
        yield (
            None,
            torch.from_numpy(labels[idx]),
            torch.from_numpy(has_artifact[idx]),
            torch.zeros(0),
            torch.from_numpy(np.ascontiguousarray(acts[idx])),
        )


@contextmanager
def _layer_hook(module: nn.Module, layer: str, method: CorrectionMethod, box: dict) -> Iterator[None]:
    """Record the CAV layer's output (as the tensor the penalty differentiates) and apply the method's transform."""

    def hook(_m, _i, out):
        if method.needs_layer_grad and not out.requires_grad:
            out = out.detach().requires_grad_(True)
        box["acts"] = out
        return method.transform(out, box["batch"])

    handle = get_layer(module, layer).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


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


def _concept_stats(
    model: LoadedModel, view: SplitView, dataset_id: str, layer: str, h: np.ndarray, has_artifact: np.ndarray, workspace
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean CAV projection per spatial position over clean and over artifact samples, (H, W) each."""
    maps = cached_activations(model, view, dataset_id, layer, "none", workspace=workspace).values
    proj = np.tensordot(np.asarray(maps, dtype=np.float64), h, axes=([1], [0]))  # (N, H, W)
    if not has_artifact.any() or has_artifact.all():
        raise ConfigError("need training samples both with and without the artifact")
    return torch.tensor(proj[~has_artifact].mean(0)), torch.tensor(proj[has_artifact].mean(0))


def _artifact_masks(model: LoadedModel, view: SplitView, cav: Cav, has_artifact: np.ndarray, source: str) -> np.ndarray:
    size = model.meta.input_size
    masks = np.zeros((len(view), size, size), dtype=bool)
    chosen = np.flatnonzero(has_artifact)
    if source == "ground_truth":
        if view.artifact is None:
            raise ConfigError("ground-truth masks exist only for planted artifacts; use mask_source='concept'")
        for i in chosen:
            masks[i] = view.mask(i)
        return masks
    for start in range(0, len(chosen), 128):
        part = chosen[start : start + 128]
        x, _ = view_batch(view, part, model)
        masks[part] = heatmap_masks(concept_heatmaps(model, x, cav.vector, cav.layer))
    return masks


def correct(
    model: LoadedModel,
    dataset: ClarcDataset,
    cav: Cav,
    method: str = "rrclarc",
    method_config=None,
    loop: LoopConfig | None = None,
    *,
    artifact_ids: Collection[str] | None = None,
    attacked_class: str | None = None,
    workspace: str | os.PathLike | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> CorrectionResult:
    """Correct `model` for the concept `cav` with `method`; returns a corrected copy (the input is not modified).
    `artifact_ids` names the training samples that show the artifact (default: the planted ones);
    `attacked_class` the class it is tied to (default: the first planted class, else class 0)."""
    start = time.perf_counter()
    info = get_method(method)
    method_config = method_config if method_config is not None else info.config()
    if not isinstance(method_config, info.config):
        raise ConfigError(f"{method} takes a {info.config.__name__}, got {type(method_config).__name__}")
    loop = loop or LoopConfig()
    layer = cav.layer or model.default_layer
    get_layer(model.module, layer)
    device = resolve_device(loop.device)
    torch.manual_seed(loop.seed)
    generator = torch.Generator().manual_seed(loop.seed)

    view = dataset.split("train", normalization=model.meta.normalization)
    if artifact_ids is None:
        has_artifact = view.has_artifact.copy()
    else:
        wanted = set(artifact_ids)
        has_artifact = np.array([sid in wanted for sid in view.sample_ids], dtype=bool)
    attacked = attacked_class or (dataset.planting.classes[0] if dataset.planting else dataset.classes[0])
    if attacked not in dataset.classes:
        raise ConfigError(f"unknown attacked class {attacked!r}; classes are {list(dataset.classes)}")

    runner = info.factory(method_config)
    runner.h = torch.tensor(cav.vector, dtype=torch.float32, device=device)
    runner.attacked_class = dataset.classes.index(attacked)
    if method in ("aclarc", "pclarc"):
        clean_mean, artifact_mean = _concept_stats(
            model, view, dataset.dataset_id, layer, cav.vector, has_artifact, workspace
        )
        runner.clean_mean, runner.artifact_mean = clean_mean.float().to(device), artifact_mean.float().to(device)

    module = copy.deepcopy(model.module).to(device)
    correction = {
        "method": method,
        "config": asdict(method_config),
        "loop": asdict(loop),
        "layer": layer,
        "cav_kind": cav.kind,
    }
    meta = replace(model.meta, training={"base": model.meta.training, "correction": correction})
    if not runner.trains:
        attach_projection(module, layer, runner.h, runner.clean_mean)
        module.eval()
        corrected = LoadedModel(module=module, meta=meta)
        return CorrectionResult(
            corrected, method, asdict(method_config), asdict(loop), [], time.perf_counter() - start, cached_path=False
        )

    try:
        upper = split_at_layer(module, layer, model.meta.input_size)
    except ConfigError:
        upper = None
    params = _set_trainable(module, upper, loop.trainable)
    upper_params = {id(p) for p in upper.parameters()} if upper is not None else set()
    lower_frozen = upper is not None and all(id(p) in upper_params for p in params)
    cached = loop.cache_activations and lower_frozen and not runner.needs_input_grad
    acts = None
    if cached:
        acts = cached_activations(model, view, dataset.dataset_id, layer, "none", workspace=workspace).values
    masks = _artifact_masks(model, view, cav, has_artifact, method_config.mask_source) if runner.needs_masks else None
    if cached:
        labels = view.labels.astype(np.int64)

        def batches():
            return _cached_batches(acts, labels, has_artifact, loop.batch_size, generator)
    else:
        loader = DataLoader(
            _Images(view, has_artifact, masks),
            batch_size=loop.batch_size,
            shuffle=True,
            generator=generator,
            pin_memory=device.type == "cuda",
        )

        def batches():
            return ((x, y, f, m, None) for x, y, f, m in loader)

    optimizer = (
        torch.optim.Adam(params, lr=loop.lr)
        if loop.optimizer == "adam"
        else torch.optim.SGD(params, lr=loop.lr, momentum=0.9)
    )
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda" and loop.mixed_precision
        else nullcontext()
    )
    box: dict = {}
    history: list[dict] = []
    good_state = copy.deepcopy(module.state_dict())
    hook = nullcontext() if cached else _layer_hook(module, layer, runner, box)
    with hook:
        for epoch in range(1, loop.epochs + 1):
            _train_modes(module)
            t0 = time.perf_counter()
            sums = torch.zeros(3, device=device)
            seen = 0
            for x, y, flags, m, a in batches():
                if cancel is not None and cancel.is_set():
                    raise CorrectionCancelled(f"{method} run cancelled in epoch {epoch}")
                y = y.to(device, non_blocking=True)
                batch = Batch(
                    inputs=None,
                    labels=y,
                    has_artifact=flags.to(device),
                    masks=m.to(device) if runner.needs_masks else None,
                    generator=generator,
                )
                box["batch"] = batch
                with autocast:
                    if cached:
                        layer_out = a.to(device, non_blocking=True).requires_grad_(runner.needs_layer_grad)
                        logits = upper(runner.transform(layer_out, batch))
                    else:
                        x = x.to(device, non_blocking=True).requires_grad_(runner.needs_input_grad)
                        batch.inputs = x
                        logits = module(x)
                        layer_out = box["acts"]
                    ce = nn.functional.cross_entropy(logits.float(), y)
                    penalty = runner.penalty(logits.float(), layer_out, batch)
                loss = ce if penalty is None else ce + penalty
                if not torch.isfinite(loss):
                    module.load_state_dict(good_state)
                    module.eval()
                    raise CorrectionFailed(
                        f"{method} diverged in epoch {epoch} (loss {loss.item()}); kept the state before that epoch",
                        LoadedModel(module=module, meta=meta),
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                extra = penalty.detach() if penalty is not None else torch.zeros((), device=device)
                sums += torch.stack([loss.detach(), ce.detach(), extra]) * len(y)
                seen += len(y)
            good_state = copy.deepcopy(module.state_dict())
            loss_v, ce_v, pen_v = (sums / seen).tolist()
            record = {"epoch": epoch, "loss": loss_v, "ce": ce_v, "penalty": pen_v, "seconds": time.perf_counter() - t0}
            history.append(record)
            log.info("%s epoch %d/%d %s", method, epoch, loop.epochs, record)
            if on_progress:
                on_progress(ProgressEvent("epoch", epoch, loop.epochs, record))
    module.eval()
    for p in module.parameters():
        p.requires_grad_(True)
    corrected = LoadedModel(module=module, meta=meta)
    return CorrectionResult(
        corrected, method, asdict(method_config), asdict(loop), history, time.perf_counter() - start, cached_path=cached
    )
