"""An estimate that never flatters: bootstrap intervals over test images and donors, and the transplant's check
against natural artifact images, which must pass a faithful transplant and fail one whose masks miss the artifact or
cover the lesion."""

import numpy as np
import pytest

from backend.concepts import fit_concept, planted_labels
from backend.data import Donor, TransplantAttack
from backend.defaults import DEFAULT_CHECKPOINT
from backend.evaluation import SampleHits, accuracy_interval, gap_closed_interval
from backend.evaluation.fidelity import check_transplant
from backend.models import load_checkpoint


def test_an_interval_is_as_wide_as_the_test_images_make_it_and_covers_the_truth():
    rng = np.random.default_rng(0)
    misses = 0
    for trial in range(40):
        hits = rng.random((300, 1)) < 0.7
        low, high = accuracy_interval(SampleHits(np.ones(300, bool), hits, np.arange(300)), draws=400, seed=trial)
        misses += not low <= 0.7 <= high
        assert 0.06 < high - low < 0.14  # 2 × 1.96 × sqrt(0.21 / 300) ≈ 0.10
    assert misses <= 6  # a 95% interval misses about 2 of 40


def test_donors_are_resampled_too_so_an_estimate_resting_on_few_donors_is_wide():
    rng = np.random.default_rng(1)
    donors = rng.integers(4, size=(300, 3))
    hits = donors < 2  # whether a prediction survives depends only on which donor was pasted
    images_only = accuracy_interval(SampleHits(np.ones(300, bool), hits, np.arange(300)))
    with_donors = accuracy_interval(SampleHits(np.ones(300, bool), hits, np.arange(300), donors))
    assert with_donors[1] - with_donors[0] > 4 * (images_only[1] - images_only[0])
    assert with_donors[0] < 0.3 and with_donors[1] > 0.7


def test_the_gap_closed_is_resampled_paired():
    rng = np.random.default_rng(2)
    clean = rng.random(400) < 0.9
    attacked = (rng.random((400, 2)) < 0.5) & clean[:, None]
    before = SampleHits(clean, attacked, np.arange(400))
    low, high = gap_closed_interval(before, before)
    assert low <= 0 <= high and high - low < 1e-9  # the same model: nothing closed, whatever the draw
    fixed = SampleHits(clean, np.repeat(clean[:, None], 2, axis=1), np.arange(400))
    assert gap_closed_interval(before, fixed) == pytest.approx([1.0, 1.0])
    assert gap_closed_interval(before, SampleHits(clean)) is None


@pytest.fixture(scope="module")
def setting(small_dataset, workspace):
    """The default (biased) model, the CAV of its planted marker, and the training images of the attacked class with
    and without the marker."""
    model = load_checkpoint(DEFAULT_CHECKPOINT)
    labels = planted_labels(small_dataset)
    cav = fit_concept(model, small_dataset, labels, n_random=0, workspace=workspace).cav
    train = small_dataset.split("train")
    k = small_dataset.classes.index(cav.attacked_class)
    of_class = np.flatnonzero(train.labels == k)
    natural = np.array([i for i in of_class if train.has_artifact[i]])
    targets = np.array([i for i in of_class if not train.has_artifact[i]])
    return model, small_dataset, cav, train, natural, targets, k


def _check(setting, mask_of):
    model, dataset, cav, train, natural, targets, k = setting
    donors = [Donor(train.sample_ids[i], train.image(i), mask_of(train, i)) for i in natural]
    pasted = dataset.split("train", "attacked", model.meta.normalization, attack=TransplantAttack(donors))
    return check_transplant(model, train, pasted, natural, targets, cav, k)


def test_a_faithful_transplant_passes_its_check(setting):
    check = _check(setting, lambda view, i: view.mask(i))  # the marker's true masks
    assert check.reliable is True, check.reasons
    assert 0.75 <= check.logit_ratio <= 1.33 and check.evidence_covered < 0.2


def test_masks_that_miss_the_artifact_fail_the_check(setting):
    def corner(view, i):
        mask = np.zeros(view.mask(i).shape, bool)
        mask[:4, :4] = ~view.mask(i)[:4, :4]  # a patch of skin, not the marker
        return mask

    check = _check(setting, corner)
    assert check.reliable is False and check.logit_ratio < 0.75
    assert any("miss part of the artifact" in reason for reason in check.reasons)


def test_masks_over_the_lesion_fail_the_check(setting):
    def lesion(view, i):
        size = view.mask(i).shape[0]
        yy, xx = np.mgrid[:size, :size]
        return ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2) | view.mask(i)

    check = _check(setting, lesion)
    assert check.reliable is False and check.evidence_covered > 0.2
    assert any("evidence" in reason for reason in check.reasons)


def test_a_sham_that_moves_accuracy_makes_the_estimate_unreliable():
    from backend.evaluation.fidelity import TransplantCheck, with_sham

    passed = TransplantCheck(reliable=True)
    assert with_sham(passed, -0.01).reliable is True and with_sham(passed, -0.01).sham_change == -0.01
    failed = with_sham(passed, -0.05)
    assert failed.reliable is False and "-5.0 points" in failed.reasons[0]


def test_every_model_an_estimate_measures_gets_its_own_check_and_sham(setting):
    import copy

    from backend.evaluation import AttackConfig, attacked_set, evaluate

    model, dataset, cav, train, natural, targets, k = setting
    donors = set(train.sample_ids[i] for i in natural)
    attacked = attacked_set(model, dataset, cav, AttackConfig(attack="transplanted"), donor_ids=donors)
    assert attacked.sham is not None and attacked.check_for(model) is attacked.check
    before = evaluate(model, dataset, cav, attack=attacked)
    other = copy.deepcopy(model)
    after = evaluate(other, dataset, cav, attack=attacked)
    for result in (before, after):
        assert result.estimate_check["sham_change"] is not None and result.attacked_acc_interval is not None
    # the same weights: made again for the copy, in units of the effect before, the check gives the same ratio
    assert after.estimate_check["logit_ratio"] == pytest.approx(before.estimate_check["logit_ratio"], abs=1e-6)
