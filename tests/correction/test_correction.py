"""Correction: the cached path is exact, every method runs, RR-ClArC removes the shortcut on the benchmark, failures
and cancellation leave nothing broken, exports reload with their metrics."""

import copy
import json
import threading

import numpy as np
import pytest
import torch
import torch.nn as nn

from backend.concepts import CavSummary, cached_activations, collect_activations, fit_cav
from backend.correction import (
    ConceptInputs,
    ConceptTarget,
    CorrectionCancelled,
    CorrectionFailed,
    LoopConfig,
    RRClarcConfig,
    RRRConfig,
    correct,
    directional_penalty,
    get_method,
    gradient_target,
    method_names,
    tap_layer,
)
from backend.data import open_dataset
from backend.defaults import DEFAULT_CHECKPOINT
from backend.errors import ConfigError
from backend.evaluation import directional_derivatives, evaluate
from backend.models import build_model, capture_layer, load_checkpoint, split_at_layer
from backend.runs import ConceptOutcome, CorrectionJob, export_corrected, method_config_from
from tests.conftest import SMALL_SPEC, run_backend

LAYER = "features.20"


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(DEFAULT_CHECKPOINT)


@pytest.fixture(scope="module")
def embedded(model, workspace):
    return open_dataset(model.meta.dataset, workspace)


@pytest.fixture(scope="module")
def cav(model, embedded, workspace):
    train = cached_activations(model, embedded.split("train"), embedded.dataset_id, LAYER, "mean", workspace=workspace)
    return fit_cav(np.asarray(train.values), train.has_artifact.astype(int), layer=LAYER, pooling="mean")


def _no_hooks(module):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in module.modules())


def test_cached_path_gives_the_same_losses_and_gradients_as_the_full_forward(model, small_dataset, cav):
    module = build_model("vgg_compact", 3).double().eval()
    module.load_state_dict({k: v.double() for k, v in model.module.state_dict().items()})
    view = small_dataset.split("train", normalization=model.meta.normalization)
    x = torch.stack([view[i][0] for i in range(16)]).double()
    y = torch.tensor(view.labels[:16])
    h = torch.tensor(cav.vector, dtype=torch.float64)
    runner = get_method("rrclarc").factory(RRClarcConfig())
    runner.prepare(ConceptInputs(h=h, attacked_class=0))

    def loss_and_grads(logits, acts):
        target = gradient_target(logits, "logprobs", y)
        (grad,) = torch.autograd.grad(target, acts, create_graph=True)
        loss = nn.functional.cross_entropy(logits, y) + 1e5 * directional_penalty(grad, h, "l2")
        head = [p for m in module.modules() if isinstance(m, nn.Linear) for p in m.parameters()]
        return loss.detach(), torch.autograd.grad(loss, head)

    with tap_layer(module, LAYER, runner) as tap:
        full_loss, full_grads = loss_and_grads(module(x), tap.output)
    with torch.no_grad(), capture_layer(module, LAYER) as captured:  # what the cache stores: the lower part's output
        module(x)
    cached = captured[0].clone().requires_grad_(True)
    upper = split_at_layer(module, LAYER, 64)
    cached_loss, cached_grads = loss_and_grads(upper(cached), cached)
    torch.testing.assert_close(cached_loss, full_loss, rtol=1e-5, atol=1e-7)
    for a, b in zip(cached_grads, full_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-8)
    assert _no_hooks(module)


def test_cached_and_full_forward_runs_end_in_the_same_model(model, small_dataset, cav, workspace):
    # One batch per epoch and no dropout, so both paths see identical batches; only float summation order differs.
    module = copy.deepcopy(model.module)
    for m in module.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    no_dropout = type(model)(module=module, meta=model.meta)
    loop = dict(epochs=2, batch_size=len(small_dataset.split("train")), device="cpu")
    runs = [
        correct(
            no_dropout,
            small_dataset,
            [ConceptTarget(cav)],
            "rrclarc",
            None,
            LoopConfig(cache_activations=c, **loop),
            workspace=workspace,
        )
        for c in (True, False)
    ]
    assert [r.cached_path for r in runs] == [True, False]
    for a, b in zip(runs[0].history, runs[1].history):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)
    for (name, p), q in zip(runs[0].model.module.state_dict().items(), runs[1].model.module.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-5, msg=name)


def test_rrclarc_removes_the_shortcut_and_its_penalty_goes_down(model, embedded, cav, workspace):
    before = evaluate(model, embedded, cav)
    result = correct(
        model, embedded, [ConceptTarget(cav)], "rrclarc", None, LoopConfig(device="cpu"), workspace=workspace
    )
    after = evaluate(result.model, embedded, cav)
    penalties = [h["penalty"] for h in result.history]
    assert penalties[-1] < penalties[0]
    assert after.attacked_acc >= before.attacked_acc + 0.25
    assert after.clean_acc >= before.clean_acc - 0.03
    assert after.tcav_sensitivity <= 0.2 * before.tcav_sensitivity
    assert _no_hooks(model.module) and _no_hooks(result.model.module)
    assert result.model.module is not model.module  # the input model is left as it was


@pytest.mark.parametrize("method", ["finetune", "aclarc", "pclarc", "rrr"])
def test_every_method_runs_and_reports(method, model, small_dataset, cav, workspace):
    events = []
    result = correct(
        model,
        small_dataset,
        [ConceptTarget(cav)],
        method,
        None,
        LoopConfig(epochs=2, device="cpu"),
        workspace=workspace,
        on_progress=events.append,
    )
    logits = result.model.module(torch.zeros(1, 3, 64, 64))
    assert logits.shape == (1, 3) and torch.isfinite(logits).all()
    if method == "pclarc":
        assert result.history == [] and hasattr(result.model.module.features[20], "clarc_projection")
    else:
        assert [e.step for e in events] == [1, 2] and len(result.history) == 2
    assert result.cached_path == (method in ("finetune", "aclarc"))


def test_rrr_with_concept_masks(model, small_dataset, cav, workspace):
    result = correct(
        model,
        small_dataset,
        [ConceptTarget(cav)],
        "rrr",
        RRRConfig(mask_source="concept"),
        LoopConfig(epochs=1, device="cpu"),
        workspace=workspace,
    )
    assert result.history[0]["penalty"] >= 0


def test_export_reloads_with_its_metrics_and_loads_into_plain_torchvision(
    model, small_dataset, cav, workspace, tmp_path
):
    embedded = small_dataset  # any planted dataset: the figures must reload exactly
    import torchvision  # noqa: F401
    from safetensors.torch import load_file

    for method in ("rrclarc", "pclarc"):
        result = correct(
            model, embedded, [ConceptTarget(cav)], method, None, LoopConfig(epochs=2, device="cpu"), workspace=workspace
        )
        before, after = evaluate(model, embedded, cav), evaluate(result.model, embedded, cav)
        outcome = ConceptOutcome(CavSummary.of(cav), None, None, before, after)
        path, card = export_corrected(
            result, tmp_path / method, cavs=[cav], outcomes=[outcome], dataset=embedded, artifact_ids={"train_00001"}
        )
        reloaded = load_checkpoint(path)
        again = evaluate(reloaded, embedded, cav)
        assert again.clean_acc == pytest.approx(after.clean_acc, abs=1e-6)
        assert again.attacked_acc == pytest.approx(after.attacked_acc, abs=1e-6)
        plain = build_model("vgg_compact", 3)
        plain.load_state_dict(load_file(str(path)))  # strict: the plain architecture's keys, nothing else
        info = json.loads(card.read_text())
        correction = info["training"]["correction"]
        assert correction["method"] == method and len(correction["cav"]["vector"]) == 128
        assert correction["before"]["attacked_acc"] == pytest.approx(before.attacked_acc)
        assert correction["annotations_sha256"] and info["version"]


def test_nan_loss_stops_and_keeps_the_last_good_state(model, small_dataset, cav, workspace):
    with pytest.raises(CorrectionFailed, match="diverged") as caught:
        correct(
            model,
            small_dataset,
            [ConceptTarget(cav)],
            "rrclarc",
            RRClarcConfig(lam=1e38),
            LoopConfig(epochs=3, lr=1e30),
            workspace=workspace,
        )
    kept = caught.value.model.module
    assert all(torch.isfinite(p).all() for p in kept.parameters())


def test_cancellation_stops_the_run(model, small_dataset, cav, workspace):
    flag = threading.Event()
    flag.set()
    with pytest.raises(CorrectionCancelled):
        correct(
            model,
            small_dataset,
            [ConceptTarget(cav)],
            "finetune",
            None,
            LoopConfig(epochs=2),
            workspace=workspace,
            cancel=flag,
        )
    assert _no_hooks(model.module)


def test_configs_are_validated():
    assert set(method_names()) == {"rrclarc", "aclarc", "pclarc", "rrr", "finetune"}
    with pytest.raises(ConfigError, match="unknown gradient target 'maximum'"):
        RRClarcConfig(gradient_target="maximum")
    with pytest.raises(ConfigError, match="unknown aggregation"):
        RRClarcConfig(aggregation="l3")
    with pytest.raises(ConfigError, match="unknown trainable"):
        LoopConfig(trainable="convs")
    with pytest.raises(ConfigError, match="aclarc does not take lam"):
        method_config_from("aclarc", {"lam": 1.0})
    with pytest.raises(ConfigError, match="unknown correction method 'dropout'"):
        CorrectionJob(out="x", method="dropout")


def test_directional_derivative_matches_finite_differences(model, small_dataset, cav):
    view = small_dataset.split("test", "attacked", model.meta.normalization)
    x = torch.stack([view[i][0] for i in range(4)])
    dd = directional_derivatives(model, x, cav.vector, LAYER, 1)
    upper = split_at_layer(copy.deepcopy(model.module).double(), LAYER, 64)
    acts = torch.tensor(collect_activations(model, view, LAYER, "none", indices=range(4)), dtype=torch.float64)
    h = torch.tensor(cav.vector, dtype=torch.float64).view(1, -1, 1, 1)
    eps = 1e-4
    with torch.no_grad():
        reference = (upper(acts + eps * h)[:, 1] - upper(acts - eps * h)[:, 1]) / (2 * eps)
    np.testing.assert_allclose(dd, reference.numpy(), rtol=2e-3, atol=1e-5)


def test_cli_correct_and_evaluate(tmp_path):
    out, report = tmp_path / "corrected", tmp_path / "correct.json"
    small = ("--dataset", "synthderm?n_train=600&n_val=60&n_test=150")  # the default model, fewer images
    done = run_backend("correct", "--epochs", "2", *small, "--out", str(out), "--json", str(report), timeout=600)
    assert done.returncode == 0, done.stderr
    summary = json.loads(report.read_text())
    assert summary["after"]["attacked_acc"] > summary["before"]["attacked_acc"]
    assert (out / "model.safetensors").exists() and (out / "model.json").exists()
    assert "before" in done.stdout and "epoch 2/2" in done.stderr
    done = run_backend(
        "evaluate",
        "--checkpoint",
        str(out / "model.safetensors"),
        *small,
        "--json",
        str(tmp_path / "eval.json"),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads((tmp_path / "eval.json").read_text())
    assert figures["attacked_acc"] == pytest.approx(summary["after"]["attacked_acc"], abs=1e-6)
    done = run_backend("correct", "--method", "aclarc", "--lam", "3", "--out", str(out), timeout=300)
    assert done.returncode == 2 and "aclarc does not take lam" in done.stderr


@pytest.mark.slow
def test_bench_correction_quick_writes_both_tables(tmp_path):
    out = tmp_path / "correction.json"
    done = run_backend(
        "bench", "correction", "--quick", "--epochs", "3", "--dataset", SMALL_SPEC, "--json", str(out), timeout=900
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())
    methods = figures["methods"]
    assert set(methods) == {"before", "finetune", "aclarc", "pclarc", "rrr", "rrclarc"}
    for row in methods.values():
        assert set(row) >= {"clean_acc", "attacked_acc", "tcav_sensitivity", "tcav_score", "r_bias", "seconds"}
    assert methods["rrclarc"]["attacked_acc"] >= methods["finetune"]["attacked_acc"] + 0.1
    assert methods["rrclarc"]["tcav_sensitivity"] < methods["before"]["tcav_sensitivity"]
    assert set(figures["svm"]["methods"]) == {"before", "aclarc", "pclarc", "rrclarc"}
    assert figures["speed"]["rrclarc_vs_finetune_epoch"] > 0 and figures["speed"]["cached_speedup"] > 1
    assert "| rrclarc |" in (tmp_path / "correction.md").read_text()


def test_evaluate_reports_accuracy_with_and_without_annotated_artifacts(model, small_dataset):
    view = small_dataset.split("test")
    annotated = set(view.sample_ids[:20])
    figures = evaluate(model, small_dataset, None, artifact_ids=annotated)
    logits = model.module.eval()(
        torch.stack([view.with_normalization(model.meta.normalization)[i][0] for i in range(len(view))])
    )
    hits = logits.argmax(1).numpy() == view.labels
    assert figures.with_artifact_acc == pytest.approx(hits[:20].mean())
    assert figures.without_artifact_acc == pytest.approx(hits[20:].mean())
    assert figures.tcav_score is None and figures.r_bias is not None
