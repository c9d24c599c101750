"""Counterfactual augmentation: annotated artifacts pasted into other classes' training images, labels kept, and a
correction that trains on them."""

import numpy as np
import pytest

from backend.concepts import cached_activations, fit_cav
from backend.correction import ConceptTarget, LoopConfig, correct
from backend.correction.augmentation import TrainingSamples, pasted_copies
from backend.defaults import DEFAULT_CHECKPOINT
from backend.errors import ConfigError
from backend.models import load_checkpoint

LAYER = "features.20"


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(DEFAULT_CHECKPOINT)


@pytest.fixture(scope="module")
def cav(model, small_dataset, workspace):
    view = small_dataset.split("train")
    acts = cached_activations(model, view, small_dataset.dataset_id, LAYER, "mean", workspace=workspace)
    return fit_cav(np.asarray(acts.values), acts.has_artifact.astype(int), layer=LAYER, pooling="mean")


def test_pasted_copies_carry_an_annotated_artifact_into_every_class_with_their_labels(model, small_dataset, cav):
    view = small_dataset.split("train", normalization=model.meta.normalization)
    flags = view.has_artifact[:, None].copy()
    (copies,) = pasted_copies(model, small_dataset, view, [cav], flags, 0.5, seed=3, with_masks=True)
    assert isinstance(copies, TrainingSamples)
    chosen = copies.indices
    assert not flags[chosen].any(), "artifacts are pasted only into images without one"
    assert 0.3 < len(chosen) / (~flags[:, 0]).sum() < 0.7
    assert len({view.labels[i] for i in chosen}) == len(view.classes), "every class gets pasted copies"
    assert copies.has_artifact.all()
    for n in range(3):
        i = int(chosen[n])
        x, label, flag, mask = copies[n]
        assert label == view.labels[i] and bool(flag[0])
        pasted, original = copies.view.image(i), view.image(i)
        changed = np.any(pasted != original, axis=-1)
        assert mask.bool().numpy().any() and not changed[~mask.bool().numpy()].any(), "only the donor's mask changes"
    again = pasted_copies(model, small_dataset, view, [cav], flags, 0.5, seed=3, with_masks=False)[0]
    assert np.array_equal(again.indices, chosen) and again.masks is None, "deterministic in the seed"


def test_a_correction_with_pasted_copies_trains_on_more_images_and_changes_the_model(model, small_dataset, cav):
    loop = dict(epochs=1, device="cpu", trainable="head")
    plain = correct(model, small_dataset, [ConceptTarget(cav)], loop=LoopConfig(**loop))
    augmented = correct(model, small_dataset, [ConceptTarget(cav)], loop=LoopConfig(augment=0.5, **loop))
    assert plain.cached_path and not augmented.cached_path, "pasted copies need the images"
    assert augmented.loop["augment"] == 0.5
    weights = [dict(r.model.module.named_parameters())["classifier.6.weight"] for r in (plain, augmented)]
    assert not np.allclose(weights[0].detach().numpy(), weights[1].detach().numpy())


def test_augment_outside_0_1_is_refused():
    with pytest.raises(ConfigError, match="augment"):
        LoopConfig(augment=1.5)
