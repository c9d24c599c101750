"""Training from the CLI: the quick config is fast and still learns the planted shortcut; a training stops when
cancelled, and a diverging one keeps its last good state."""

import copy
import json
import threading
import time

import pytest
import torch

import backend.training
from backend.errors import Cancelled, ConfigError
from backend.models import load_checkpoint
from backend.training import TrainConfig, _augment, train_model
from backend.training_core import TrainingCancelled, TrainingDiverged
from tests.conftest import run_backend


def test_quick_training_from_the_cli_is_fast_and_learns_the_shortcut(tmp_path, workspace):
    out, report = tmp_path / "quick.safetensors", tmp_path / "quick.json"
    start = time.perf_counter()
    done = run_backend("train", "--quick", "--out", str(out), "--json", str(report), timeout=300)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    assert seconds <= 60, f"train --quick took {seconds:.1f} s"
    epochs = TrainConfig.quick().epochs
    assert all(f"epoch {e}/{epochs}" in done.stderr for e in range(1, epochs + 1))  # a progress line per epoch
    metrics = json.loads(report.read_text())["metrics"]
    assert metrics["test_clean_acc"] >= 0.8
    assert metrics["test_clean_acc"] - metrics["test_attacked_acc"] >= 0.2, metrics
    model = load_checkpoint(out)
    assert model.meta.metrics["test_clean_acc"] == metrics["test_clean_acc"]
    assert model.meta.training["epochs"] == epochs


def test_progress_callback_and_history(small_dataset):
    events = []
    result = train_model(
        TrainConfig(dataset=str(small_dataset.spec), epochs=2, device="cpu"), on_progress=events.append
    )
    assert [(e.stage, e.step, e.total) for e in events] == [("epoch", 1, 2), ("epoch", 2, 2)]
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert {"loss", "train_acc", "val_acc"} <= set(result.history[0])
    assert result.model.meta.dataset == str(small_dataset.spec)
    assert result.model.meta.normalization.std[0] > 0


def test_augmentation_only_flips_and_transposes():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    out = _augment(x, torch.Generator().manual_seed(0))
    for a, b in zip(x, out):
        candidates = [a, a.flip(-1), a.flip(-2), a.flip(-1).flip(-2)]
        candidates += [c.transpose(-1, -2) for c in candidates]
        assert any(torch.equal(b, c) for c in candidates)


@pytest.mark.parametrize("bad", [dict(epochs=0), dict(lr=0.0), dict(arch="alexnet"), dict(device="tpu")])
def test_bad_training_configs(bad):
    with pytest.raises(ConfigError):
        TrainConfig(**bad)


def test_cli_reports_bad_input_without_a_traceback(tmp_path):
    done = run_backend(
        "train", "--dataset", "synthderm?artifact=sticker", "--out", str(tmp_path / "x.safetensors"), timeout=120
    )
    assert done.returncode == 2
    assert "error: unknown artifact 'sticker'" in done.stderr and "Traceback" not in done.stderr


def test_training_stops_when_cancelled(small_dataset):
    flag = threading.Event()
    done = []

    def cancel_after_the_first_epoch(event) -> None:
        done.append(event.step)
        flag.set()

    config = TrainConfig(dataset=str(small_dataset.spec), epochs=3, device="cpu")
    with pytest.raises(TrainingCancelled, match="epoch 2") as caught:
        train_model(config, on_progress=cancel_after_the_first_epoch, cancel=flag)
    assert isinstance(caught.value, Cancelled) and done == [1]


def test_a_diverging_training_keeps_the_state_of_its_last_good_epoch_and_raises(small_dataset, monkeypatch):
    built, kept = [], {}
    build = backend.training.build_model

    def build_and_keep(*args, **kwargs):
        built.append(build(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(backend.training, "build_model", build_and_keep)
    batches_per_epoch = -(-len(small_dataset.split("train")) // 64)
    calls = []

    def poisoned_in_epoch_2(x, generator):
        calls.append(1)
        return torch.full_like(x, float("nan")) if len(calls) > batches_per_epoch else x

    def keep_the_state(event) -> None:
        kept[event.step] = copy.deepcopy(built[0].state_dict())

    monkeypatch.setattr(backend.training, "_augment", poisoned_in_epoch_2)
    config = TrainConfig(dataset=str(small_dataset.spec), epochs=3, device="cpu")
    with pytest.raises(TrainingDiverged, match="diverged in epoch 2") as caught:
        train_model(config, on_progress=keep_the_state)
    assert list(kept) == [1] and caught.value.module is built[0] and not built[0].training
    state = built[0].state_dict()
    assert state.keys() == kept[1].keys()
    for name, value in kept[1].items():
        assert torch.equal(state[name], value), name
