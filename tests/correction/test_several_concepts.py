"""Several shortcuts at once: RR-ClArC penalises each CAV, A-ClArC moves each concept's clean samples, P-ClArC
projects all directions together, and a job measures every concept before and after."""

import json

import pytest
import torch

from backend.bench.multi import write_folders
from backend.concepts import fit_concept, read_concept_labels
from backend.correction import (
    AClarcConfig,
    Batch,
    ConceptInputs,
    ConceptTarget,
    LoopConfig,
    RRClarcConfig,
    correct,
    directional_penalty,
    get_method,
    gradient_target,
)
from backend.data import open_dataset
from backend.errors import ConfigError
from backend.models import (
    attach_projection,
    build_model,
    capture_layer,
    find_projection,
    load_checkpoint,
    save_checkpoint,
)
from backend.runs import ConceptSpec, CorrectionJob, run_correction_job
from backend.training import TrainConfig, train_model

LAYER = "features.20"
PLANTINGS = {"skin_marker": "melanoma", "band_aid": "nevus"}


def _unit(seed: int, n: int = 128) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, generator=torch.Generator().manual_seed(seed)), dim=0)


def test_rrclarc_penalises_the_gradient_along_every_cav_with_its_own_lambda():
    torch.manual_seed(0)
    acts = torch.randn(6, 128, 4, 4, requires_grad=True)
    logits = torch.einsum("nchw,kc->nk", acts, torch.randn(3, 128))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    h1, h2 = _unit(1), _unit(2)
    runner = get_method("rrclarc").factory(RRClarcConfig(lam=10.0))
    runner.prepare([ConceptInputs(h1, 0), ConceptInputs(h2, 2, lam=3.0)])
    batch = Batch(labels=labels, has_artifact=torch.zeros(6, 2, dtype=torch.bool), generator=torch.Generator())
    (grad,) = torch.autograd.grad(gradient_target(logits, "logprobs", labels), acts, retain_graph=True)
    expected = 10.0 * directional_penalty(grad, h1, "l2") + 3.0 * directional_penalty(grad, h2, "l2")
    torch.testing.assert_close(runner.penalty(logits, acts, batch), expected)


def test_class_specific_rrclarc_follows_each_concepts_own_class():
    torch.manual_seed(0)
    acts = torch.randn(4, 128, 2, 2, requires_grad=True)
    logits = torch.einsum("nchw,kc->nk", acts, torch.randn(3, 128))
    h1, h2 = _unit(1), _unit(2)
    runner = get_method("rrclarc").factory(RRClarcConfig(lam=1.0, class_specific=True))
    runner.prepare([ConceptInputs(h1, 0), ConceptInputs(h2, 2)])
    batch = Batch(
        labels=torch.zeros(4, dtype=torch.long),
        has_artifact=torch.zeros(4, 2, dtype=torch.bool),
        generator=torch.Generator(),
    )
    g0 = torch.autograd.grad(logits[:, 0].sum(), acts, retain_graph=True)[0]
    g2 = torch.autograd.grad(logits[:, 2].sum(), acts, retain_graph=True)[0]
    expected = directional_penalty(g0, h1, "l2") + directional_penalty(g2, h2, "l2")
    torch.testing.assert_close(runner.penalty(logits, acts, batch), expected)


def test_aclarc_moves_only_the_samples_without_each_concepts_artifact():
    h1, h2 = torch.eye(8)[0], torch.eye(8)[1]
    runner = get_method("aclarc").factory(AClarcConfig())
    runner.prepare(
        [
            ConceptInputs(h1, 0, clean_mean=torch.zeros(()), artifact_mean=torch.tensor(5.0)),
            ConceptInputs(h2, 1, clean_mean=torch.zeros(()), artifact_mean=torch.tensor(7.0)),
        ]
    )
    flags = torch.tensor([[True, False], [False, True], [False, False]])
    batch = Batch(labels=torch.zeros(3, dtype=torch.long), has_artifact=flags, generator=torch.Generator())
    out = runner.transform(torch.zeros(3, 8), batch)
    assert out[:, 0].tolist() == [0.0, 5.0, 5.0]  # sample 0 has artifact 1: left alone along h1
    assert out[:, 1].tolist() == [7.0, 0.0, 7.0]
    assert not out[:, 2:].any()


def test_a_projection_along_two_directions_that_are_not_orthogonal_sets_both():
    torch.manual_seed(0)
    module = build_model("vgg_compact", 3).eval()
    h1 = _unit(1)
    h2 = torch.nn.functional.normalize(h1 + _unit(2), dim=0)  # cos(h1, h2) ~ 0.7
    offsets = torch.stack([torch.full((8, 8), 0.25), torch.full((8, 8), -0.5)])
    attach_projection(module, LAYER, torch.stack([h1, h2]), offsets)
    assert find_projection(module, LAYER).h.shape == (2, 128)
    with torch.no_grad(), capture_layer(module, LAYER) as captured:
        module(torch.rand(2, 3, 64, 64))
    out = captured[0]
    torch.testing.assert_close((out * h1.view(1, -1, 1, 1)).sum(1), torch.full((2, 8, 8), 0.25), atol=1e-4, rtol=0)
    torch.testing.assert_close((out * h2.view(1, -1, 1, 1)).sum(1), torch.full((2, 8, 8), -0.5), atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def two_artifacts(tmp_path_factory, workspace):
    """A tiny folder with skin markers in melanomas and band-aids in nevi, a model trained on it, a CAV per
    artifact saved as a file."""
    root = tmp_path_factory.mktemp("multi")
    write_folders(root, PLANTINGS, n_train=150, p=0.5)
    spec = f"folder:{root / 'images'}?size=64"
    trained = train_model(TrainConfig(dataset=spec, epochs=2, device="cpu"), workspace=workspace)
    checkpoint = save_checkpoint(trained.model.module, trained.model.meta, root / "model.safetensors")
    model = load_checkpoint(checkpoint)
    dataset = open_dataset(spec, workspace)
    files = {}
    for artifact in PLANTINGS:
        labels = read_concept_labels(root / f"labels-{artifact}.csv")
        fit = fit_concept(model, dataset, labels, concept=artifact, n_random=0, workspace=workspace)
        files[artifact] = root / f"{artifact}.cav.json"
        fit.cav.save(files[artifact])
    return root, spec, checkpoint, files


def test_a_joint_run_measures_every_concept_before_and_after(two_artifacts, workspace, tmp_path):
    root, spec, checkpoint, files = two_artifacts
    job = CorrectionJob(
        out=str(tmp_path / "joint"),
        checkpoint=str(checkpoint),
        dataset=spec,
        loop=LoopConfig(epochs=2, device="cpu"),
        concepts=(
            ConceptSpec(cav=str(files["skin_marker"]), labels=str(root / "labels-skin_marker.csv")),
            ConceptSpec(
                cav=str(files["band_aid"]),
                labels=str(root / "labels-band_aid.csv"),
                lam=1e4,
                attacked_dataset=f"folder:{root / 'attacked-band_aid'}",
            ),
        ),
    )
    assert CorrectionJob.from_dict(json.loads(json.dumps(job.to_dict()))) == job
    result = run_correction_job(job, workspace=workspace).to_dict()  # the stored form
    rows = {row["concept"]: row for row in result["concepts"]}
    assert set(rows) == set(PLANTINGS)
    assert rows["band_aid"]["attacked_class"] == "nevus" and rows["band_aid"]["lam"] == 1e4
    assert rows["skin_marker"]["attacked_class"] == "melanoma"
    assert rows["band_aid"]["before"]["attack_source"] == "supplied"
    assert rows["skin_marker"]["before"]["attack_source"] == "transplanted"  # no attacked copy given for it
    for row in rows.values():
        for when in ("before", "after"):
            assert 0 <= row[when]["attacked_acc"] <= 1 and row[when]["tcav_sensitivity"] is not None
    assert rows["skin_marker"]["after"]["attacked_acc"] == pytest.approx(result["after"]["attacked_acc"])
    card = json.loads(open(result["card"]).read())["training"]["correction"]
    assert [c["concept"] for c in card["concepts"]] == ["skin_marker", "band_aid"]
    assert len(card["concepts"][1]["vector"]) == 128


def test_concepts_of_different_layers_or_unknown_cavs_are_refused(two_artifacts, workspace, tmp_path):
    root, spec, checkpoint, files = two_artifacts
    model = load_checkpoint(checkpoint)
    dataset = open_dataset(spec, workspace)
    labels = read_concept_labels(root / "labels-band_aid.csv")
    other = fit_concept(model, dataset, labels, layer="features.10", concept="band_aid", n_random=0).cav
    skin = fit_concept(model, dataset, read_concept_labels(root / "labels-skin_marker.csv"), n_random=0).cav
    with pytest.raises(ConfigError, match="same layer"):
        correct(model, dataset, [ConceptTarget(skin), ConceptTarget(other)], loop=LoopConfig(epochs=1, device="cpu"))
    base = dict(out=str(tmp_path / "x"), checkpoint=str(checkpoint), dataset=spec)
    job = CorrectionJob(**base, concepts=(ConceptSpec(cav=str(files["skin_marker"])), ConceptSpec(cav="no such cav")))
    with pytest.raises(ConfigError, match="no such cav"):
        run_correction_job(job, workspace=workspace)
    with pytest.raises(ConfigError, match="non-negative"):
        ConceptSpec(cav=str(files["band_aid"]), lam=-1.0)
    assert not (tmp_path / "x").exists()  # nothing half-written
