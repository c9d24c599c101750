"""The shipped default model: biased as promised, its card tells the truth, and training from a seed is
deterministic (the full regeneration is `python -m backend bench default-model`)."""

from dataclasses import asdict

import pytest
import torch

from backend.data import open_dataset
from backend.defaults import DEFAULT_CHECKPOINT
from backend.evaluation import clean_and_attacked_accuracy
from backend.models import card_path, load_checkpoint
from backend.training import TrainConfig, train_model


@pytest.fixture(scope="module")
def default_model():
    return load_checkpoint(DEFAULT_CHECKPOINT)


def test_the_asset_is_small_and_has_its_card(default_model):
    assert DEFAULT_CHECKPOINT.stat().st_size <= 25 * 2**20
    assert card_path(DEFAULT_CHECKPOINT).exists()
    assert default_model.meta.training == asdict(TrainConfig())  # trained with today's default config


def test_default_model_learned_the_skin_marker_shortcut(default_model, workspace):
    dataset = open_dataset(default_model.meta.dataset, workspace)
    figures = clean_and_attacked_accuracy(default_model, dataset)
    assert figures["clean_acc"] >= 0.90, figures
    assert figures["attacked_acc"] <= figures["clean_acc"] - 0.20, figures
    # The card's metrics are what the model measures now.
    card = default_model.meta.metrics
    assert figures["clean_acc"] == pytest.approx(card["test_clean_acc"], abs=1e-6)
    assert figures["attacked_acc"] == pytest.approx(card["test_attacked_acc"], abs=1e-6)


def test_training_from_a_seed_is_deterministic(small_dataset, workspace):
    """What makes the default model regenerate (`python -m backend bench default-model` retrains it in full and
    compares with the card): the same config trains the same weights, so the same figures."""
    config = TrainConfig(dataset=str(small_dataset.spec), epochs=1, device="cpu")
    first, second = (train_model(config, workspace=workspace).model for _ in range(2))
    for (name, a), b in zip(first.module.state_dict().items(), second.module.state_dict().values()):
        assert torch.equal(a, b), name
    assert first.meta.metrics["test_clean_acc"] == second.meta.metrics["test_clean_acc"]
