"""Corrections along a concept subspace: RR-ClArC penalises the gradient along every direction of a CAV's basis, and
a short run with a basis of rank 2 reduces the gradient along each of them; the run's record says the rank, a job's
concept builds its subspace and measures its coverage, the command line spells the rank."""

import numpy as np
import pytest
import torch

from backend.cli import build_parser
from backend.cli.common import job_from_args
from backend.concepts import cached_activations, fit_cav
from backend.correction import (
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
from backend.defaults import DEFAULT_CHECKPOINT
from backend.errors import ConfigError
from backend.evaluation import AttackConfig, subspace_cav, training_pairs
from backend.models import capture_layer, eval_mode, load_checkpoint
from backend.runs import ConceptSpec, CorrectionJob
from backend.runs.jobs.concepts import CavFitOptions, resolve_concept

LAYER = "features.20"


def test_rrclarc_penalises_every_direction_of_a_subspace():
    torch.manual_seed(0)
    acts = torch.randn(6, 16, 3, 3, requires_grad=True)
    logits = torch.einsum("nchw,kc->nk", acts, torch.randn(3, 16))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    basis, _ = torch.linalg.qr(torch.randn(16, 2))
    basis = basis.T.contiguous()
    runner = get_method("rrclarc").factory(RRClarcConfig(lam=10.0))
    runner.prepare(ConceptInputs(basis[0], 0, basis=basis))
    batch = Batch(labels=labels, has_artifact=torch.zeros(6, 1, dtype=torch.bool), generator=torch.Generator())
    (grad,) = torch.autograd.grad(gradient_target(logits, "logprobs", labels), acts, retain_graph=True)
    along_each = sum(directional_penalty(grad, b, "l2") for b in basis)
    torch.testing.assert_close(runner.penalty(logits, acts, batch), 10.0 * along_each)


def _gradient_along(model, x: torch.Tensor, basis: np.ndarray) -> np.ndarray:
    """Mean squared derivative of the log-probabilities along each direction of `basis`, over positions and images."""
    module = model.module
    with eval_mode(module), capture_layer(module, LAYER) as captured:
        logits = module(x)
        (grad,) = torch.autograd.grad(torch.log_softmax(logits, dim=1).sum(), captured[0])
    b = torch.tensor(basis, dtype=grad.dtype)
    return np.array([directional_penalty(grad, d, "l2").item() for d in b])


def test_a_rank_2_correction_reduces_the_gradient_along_every_direction(small_dataset, workspace):
    model = load_checkpoint(DEFAULT_CHECKPOINT, device="cpu")
    train = small_dataset.split("train")
    acts = cached_activations(model, train, small_dataset.dataset_id, LAYER, "mean", workspace=workspace)
    cav = fit_cav(np.asarray(acts.values), acts.has_artifact.astype(int), layer=LAYER, pooling="mean")
    pairs = training_pairs(model, small_dataset, cav)
    assert pairs.source == "planted"
    widened, measured = subspace_cav(model, small_dataset, cav, pairs, 2, max_pairs=64)
    assert widened.rank == 2 and measured.rank == 2 and measured.n_pairs == 64
    assert 0 < measured.coverage <= measured.leading_share + 1e-9 <= 1 + 1e-9
    assert measured.subspace_coverage > measured.coverage  # the second direction holds some of the rest
    result = correct(
        model,
        small_dataset,
        [ConceptTarget(widened)],
        "rrclarc",
        None,
        LoopConfig(epochs=2, device="cpu"),
        workspace=workspace,
    )
    assert result.model.meta.training["correction"]["concepts"][0]["rank"] == 2
    view = small_dataset.split("train", normalization=model.meta.normalization)
    x = torch.stack([view[i][0] for i in range(48)])
    before, after = _gradient_along(model, x, widened.basis), _gradient_along(result.model, x, widened.basis)
    assert (after < 0.5 * before).all(), (before, after)


def test_a_jobs_concept_of_rank_2_gets_its_subspace_and_the_summary_its_coverage(small_dataset, workspace):
    model = load_checkpoint(DEFAULT_CHECKPOINT, device="cpu")
    fit = CavFitOptions(LAYER, "pattern", "mean", "attacked_class")
    concept = resolve_concept(ConceptSpec(rank=2), AttackConfig(), fit, model, small_dataset, workspace)
    assert concept.cav.rank == 2 and concept.summary.rank == 2
    detail = concept.summary.coverage_detail
    assert (detail["source"], detail["split"], detail["rank"]) == ("planted", "train", 2)
    assert 0 < detail["position_coverage"] < detail["subspace_position_coverage"] <= 1
    assert 0 < concept.summary.coverage < concept.summary.subspace_coverage <= 1
    plain = resolve_concept(ConceptSpec(), AttackConfig(), fit, model, small_dataset, workspace)
    assert plain.cav.basis is None and plain.summary.rank == 1
    assert plain.summary.coverage == pytest.approx(concept.summary.coverage)
    assert plain.summary.subspace_coverage is None
    quiet = resolve_concept(ConceptSpec(), AttackConfig(attack="none"), fit, model, small_dataset, workspace)
    assert quiet.summary.coverage is None  # no attacked images asked for: nothing measured at rank 1
    with pytest.raises(ConfigError, match="whole number"):
        ConceptSpec(rank=0)


def test_the_rank_is_given_in_a_cav_spelling_or_on_its_own():
    parser = build_parser()
    job = job_from_args(parser.parse_args(["correct", "--out", "x", "--cav", "marks;rank=3;lam=10"]), "x")
    assert (job.concepts[0].rank, job.concepts[0].lam) == (3, 10.0)
    job = job_from_args(parser.parse_args(["correct", "--out", "x", "--rank", "2"]), "x")
    assert job.concepts[0].rank == 2
    job = job_from_args(parser.parse_args(["correct", "--out", "x", "--cav", "marks;rank=3", "--rank", "2"]), "x")
    assert job.concepts[0].rank == 3  # the concept's own spelling wins
    assert CorrectionJob.from_dict(job.to_dict()).concepts[0].rank == 3
    with pytest.raises(ConfigError, match="rank must be a whole number"):
        job_from_args(parser.parse_args(["correct", "--out", "x", "--cav", "marks;rank=2.5"]), "x")
