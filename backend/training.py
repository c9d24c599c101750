"""Training a classifier on a dataset spec; the default config produces the biased default model of ClArC Studio."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from backend.data import ClarcDataset, Normalization, open_dataset
from backend.device import DeviceChoice, resolve_device
from backend.errors import ConfigError
from backend.evaluation import accuracy, clean_and_attacked_accuracy, predict_logits
from backend.models import LoadedModel, ModelMeta, architecture_names, build_model, get_architecture
from backend.options import check_choices, option
from backend.progress import ProgressCallback
from backend.training_core import OptimizerName, Trainer, make_optimizer

__all__ = ["TrainConfig", "TrainResult", "train_model", "channel_statistics"]


@dataclass(frozen=True)
class TrainConfig:
    """How to train. The defaults reproduce `assets/default_model.safetensors`: the compact VGG on the embedded
    benchmark, where skin markers sit in half of the melanoma training images."""

    dataset: str = option("synthderm", help="dataset spec to train on")
    arch: str = option("vgg_compact", help="architecture", choices=architecture_names)
    epochs: int = option(12, help="passes over the training split")
    batch_size: int = option(64, help="images per step")
    lr: float = option(2e-3, help="peak learning rate (one-cycle schedule)")
    optimizer: OptimizerName = option("adamw", help="optimiser: adamw, adam, or sgd with momentum 0.9")
    weight_decay: float = option(5e-4, help="weight decay of the optimiser (decoupled for adamw)")
    seed: int = option(0, help="random seed (initialisation, data order, augmentation)")
    augment: bool = option(True, help="random flips and transposes of the training images")
    num_workers: int = option(0, help="DataLoader worker processes")
    device: DeviceChoice = option("auto", help="auto takes the GPU when there is one")

    def __post_init__(self) -> None:
        get_architecture(self.arch)
        check_choices(self)
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.weight_decay < 0 or self.num_workers < 0:
            raise ConfigError("weight_decay and num_workers must not be negative")

    @classmethod
    def quick(cls, **overrides) -> TrainConfig:
        """A tiny config for smoke tests and demos: small splits, few epochs, still a learned shortcut."""
        base = cls(dataset="synthderm?p=0.5&n_train=1200&n_val=150&n_test=300", epochs=6)
        return replace(base, **overrides)


@dataclass
class TrainResult:
    model: LoadedModel
    history: list[dict]
    seconds: float


def channel_statistics(dataset: ClarcDataset, split: str = "train") -> Normalization:
    """Per-channel mean and std of a split's [0, 1] images as the model will see them (artifacts included)."""
    view = dataset.split(split)
    total = np.zeros(3)
    total_sq = np.zeros(3)
    pixels = 0
    for i in range(len(view)):
        image = view.image(i).reshape(-1, 3).astype(np.float64) / 255
        total += image.sum(0)
        total_sq += (image**2).sum(0)
        pixels += image.shape[0]
    mean = total / pixels
    std = np.sqrt(np.maximum(total_sq / pixels - mean**2, 1e-12))
    return Normalization(tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std))


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flips and 90-degree rotations per sample: dermoscopy has no preferred orientation."""
    n = x.shape[0]
    flags = torch.rand(n, 3, generator=generator) < 0.5
    x = torch.where(flags[:, 0, None, None, None], x.flip(-1), x)
    x = torch.where(flags[:, 1, None, None, None], x.flip(-2), x)
    if x.shape[-1] == x.shape[-2]:
        x = torch.where(flags[:, 2, None, None, None], x.transpose(-1, -2), x)
    return x


def train_model(
    config: TrainConfig = TrainConfig(),
    *,
    workspace: str | Path | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> TrainResult:
    """Train `config.arch` on the train split of `config.dataset`; returns the model with its measured metrics
    (validation accuracy on the biased distribution, clean and attacked test accuracy). Raises TrainingCancelled
    once `cancel` is set, TrainingDiverged (with the state before the failing epoch) on a non-finite loss."""
    start = time.perf_counter()
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    dataset = open_dataset(config.dataset, workspace)
    normalization = channel_statistics(dataset)
    train_view = dataset.split("train", normalization=normalization)
    if len(train_view) == 0:
        raise ConfigError(f"the train split of {config.dataset} is empty")
    val_view = dataset.split("val", normalization=normalization)
    loader = DataLoader(
        train_view,
        batch_size=config.batch_size,
        shuffle=True,
        generator=generator,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=config.num_workers > 0,
    )
    module = build_model(config.arch, len(dataset.classes)).to(device)
    optimizer = make_optimizer(config.optimizer, module.parameters(), config.lr, config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * len(loader), pct_start=0.2
    )
    trainer = Trainer(module, optimizer, name="training", device=device, cancel=cancel, scheduler=scheduler)
    criterion = nn.CrossEntropyLoss()

    def run_epoch(epoch: int) -> dict:
        module.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen = 0
        for x, y in trainer.batches(loader):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if config.augment:
                x = _augment(x, generator)
            logits = module(x)
            loss = criterion(logits, y)
            trainer.step(loss)
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
        record = {"loss": float(loss_sum) / seen, "train_acc": float(correct) / seen}
        if len(val_view):
            record["val_acc"] = accuracy(predict_logits(module, val_view, device=device), val_view.labels)
        return record

    history = trainer.fit(config.epochs, run_epoch, on_progress)
    module.eval()
    meta = ModelMeta(
        arch=config.arch,
        classes=dataset.classes,
        input_size=dataset.image_size,
        normalization=normalization,
        dataset=str(dataset.spec),
        training=asdict(config),
    )
    model = LoadedModel(module=module, meta=meta)
    metrics = {f"test_{k}": v for k, v in clean_and_attacked_accuracy(model, dataset, device=device).items()}
    seconds = time.perf_counter() - start
    metrics |= {"val_acc": history[-1].get("val_acc"), "train_seconds": round(seconds, 1), "device": device.type}
    model.meta = replace(meta, metrics=metrics)
    return TrainResult(model=model, history=history, seconds=seconds)
