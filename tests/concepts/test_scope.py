"""CAV scope: fitted on the attacked class's samples (the seed's default) the CAV follows the artifact, not the
class; on all samples it mixes in the class direction. The attacked class is where most annotated artifacts are."""

import numpy as np
import pytest

from backend.concepts import concept_samples, fit_cav, infer_attacked_class, planted_labels
from backend.data import SplitView
from backend.errors import ConfigError


def test_the_attacked_class_is_where_most_artifacts_are(small_dataset):
    view = small_dataset.split("train")
    labels = planted_labels(small_dataset)
    assert infer_attacked_class(labels, view) == "melanoma"
    nevus = [sid for sid, y in zip(view.sample_ids, view.labels) if y == 0][:5]
    assert infer_attacked_class(dict.fromkeys(nevus, 1) | {view.sample_ids[0]: 0}, view) == "nevus"
    with pytest.raises(ConfigError, match="no sample"):
        infer_attacked_class({view.sample_ids[0]: 0}, view)


def test_scope_chooses_the_samples_and_unlabelled_ones_count_as_clean(small_dataset):
    view = small_dataset.split("train")
    labels = {sid: 1 for sid, flag in zip(view.sample_ids, view.has_artifact) if flag}  # only the artifacts
    members, y, attacked = concept_samples(view, labels, "attacked_class", None)
    melanoma = np.flatnonzero(view.labels == view.classes.index("melanoma"))
    assert attacked == "melanoma" and members.tolist() == melanoma.tolist()
    assert y.sum() == len(labels) and (1 - y).sum() == len(melanoma) - len(labels)
    members, y, _ = concept_samples(view, labels, "all", None)
    assert len(members) == len(view) and y.sum() == len(labels)
    with pytest.raises(ConfigError, match="at least 2 samples with the concept and 2 without in class nevus"):
        concept_samples(view, labels, "attacked_class", "nevus")
    with pytest.raises(ConfigError, match="unknown CAV scope"):
        concept_samples(view, labels, "everything", None)


def test_the_attacked_class_scope_separates_the_artifact_from_the_class():
    # Activations = class direction c for class 1 + artifact direction a in a share of class 1 + noise: the CAV of
    # the attacked class follows a; the CAV of all samples mixes in c.
    rng = np.random.default_rng(0)
    n, dims = 600, 32
    labels = rng.integers(0, 2, n)
    artifact = (labels == 1) & (rng.random(n) < 0.4)
    c, a = np.eye(dims)[0], np.eye(dims)[1]
    x = labels[:, None] * 3.0 * c + artifact[:, None] * a + rng.normal(0, 0.3, (n, dims))
    ids = tuple(f"s{i}" for i in range(n))
    view = SplitView(
        split="train",
        view="as_planted",
        classes=("nevus", "melanoma"),
        sample_ids=ids,
        labels=labels,
        load_image=lambda i: None,
        attack=None,
        has_artifact=np.zeros(n, dtype=bool),
    )
    marked = {sid: 1 for sid, flag in zip(ids, artifact) if flag}
    cavs = {}
    for scope in ("attacked_class", "all"):
        members, y, attacked = concept_samples(view, marked, scope, None)
        cavs[scope] = fit_cav(x[members], y).vector
        assert attacked == "melanoma"
    assert abs(cavs["attacked_class"] @ a) > 0.95 and abs(cavs["attacked_class"] @ c) < 0.1
    assert abs(cavs["all"] @ c) > 0.5
