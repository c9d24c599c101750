"""A run's typed result: stored as the JSON every script reads (`before`, `after`, `cav`, a row per concept) and read
back unchanged, older records included."""

import json

import pytest

from backend.concepts import CavSummary
from backend.evaluation import EvaluationResult
from backend.runs import ConceptOutcome, RunOutputs, RunResult


def _result() -> RunResult:
    def outcome(concept, before, after, lam=None):
        cav = CavSummary(kind="pattern", layer="features.20", concept=concept, name=concept, source=concept)
        return ConceptOutcome(
            cav,
            "melanoma",
            lam,
            EvaluationResult(clean_acc=0.9, attacked_acc=before, tcav_sensitivity=0.7, attack_source="planted"),
            EvaluationResult(clean_acc=0.88, attacked_acc=after, tcav_sensitivity=0.1, attack_source="planted"),
        )

    outputs = RunOutputs("/x/model.safetensors", "/x/model.json", "/x/model.cav.json", "/x/model.examples.npz")
    concepts = (outcome("skin_marker", 0.5, 0.8), outcome("ruler", 0.7, 0.7, lam=1e4))
    return RunResult("rrclarc", concepts, ({"epoch": 1, "loss": 0.5},), 12.5, True, outputs)


def test_the_stored_form_has_the_first_concepts_headline_and_a_row_per_concept():
    result = _result()
    data = json.loads(json.dumps(result.to_dict()))
    assert data["before"]["attacked_acc"] == 0.5 and data["after"]["attacked_acc"] == 0.8
    assert data["cav"]["concept"] == "skin_marker" and data["checkpoint"] == "/x/model.safetensors"
    assert [row["concept"] for row in data["concepts"]] == ["skin_marker", "ruler"]
    assert data["concepts"][1]["lam"] == 1e4
    assert RunResult.from_dict(data) == result


def test_the_gap_closed_is_the_share_of_the_clean_vs_attacked_gap_removed():
    first, second = _result().concepts
    assert first.gap_closed() == pytest.approx(1 - (0.88 - 0.8) / (0.9 - 0.5))
    assert second.gap_closed() == pytest.approx(1 - (0.88 - 0.7) / (0.9 - 0.7))
    no_gap = ConceptOutcome(CavSummary(), None, None, EvaluationResult(clean_acc=0.5, attacked_acc=0.6), first.after)
    assert no_gap.gap_closed() is None


def test_an_older_record_reads_with_its_cav_and_figures():
    """Before the typed result a record's concept rows held a few figures and no CAV summary."""
    old = {
        "checkpoint": "/x/m.safetensors",
        "card": "/x/m.json",
        "cav_file": "/x/m.cav.json",
        "examples": "/x/m.examples.npz",
        "method": "rrclarc",
        "cached_path": True,
        "seconds": 3.0,
        "before": {"clean_acc": 0.9, "clean_acc_per_class": {"a": 0.9}, "n": 10, "attacked_acc": 0.5},
        "after": {"clean_acc": 0.85, "clean_acc_per_class": {"a": 0.85}, "n": 10, "attacked_acc": 0.75},
        "concepts": [
            {
                "name": "m",
                "concept": "marker",
                "source": "m",
                "attacked_class": "a",
                "lam": None,
                "before": {"clean_acc": 0.9, "attacked_acc": 0.5},
                "after": {"clean_acc": 0.85, "attacked_acc": 0.75},
            },
        ],
        "history": [{"epoch": 1}],
        "cav": {"name": "m", "source": "m", "kind": "pattern", "layer": "features.20", "concept": "marker"},
    }
    result = RunResult.from_dict(old)
    assert result.cav.kind == "pattern" and result.cav.layer == "features.20"
    assert result.before.clean_acc_per_class == {"a": 0.9} and result.after.attacked_acc == 0.75
    assert result.concepts[0].attacked_class == "a" and result.outputs.card == "/x/m.json"


def test_a_job_stored_before_concepts_reads_as_the_same_job():
    """Older run records kept the first concept in `cav`, `labels`, `concept`, `attacked_class` and the others in
    `more_concepts`; they read as a job whose concepts are, in order, the same."""
    from backend.runs import ConceptSpec, CorrectionJob

    old = {
        "out": "x",
        "method": "rrclarc",
        "cav": "skin",
        "labels": "l.csv",
        "concept": "skin marker",
        "attacked_class": "melanoma",
        "more_concepts": [{"cav": "ruler", "lam": 1e4, "attacked_dataset": "folder:/a"}],
    }
    job = CorrectionJob.from_dict(old)
    assert job.concepts == (
        ConceptSpec(cav="skin", labels="l.csv", concept="skin marker", attacked_class="melanoma"),
        ConceptSpec(cav="ruler", lam=1e4, attacked_dataset="folder:/a"),
    )
    assert CorrectionJob.from_dict(json.loads(json.dumps(job.to_dict()))) == job
    assert CorrectionJob.from_dict({"out": "x"}).concepts == (ConceptSpec(),)  # the planted artifact


def test_a_gap_closed_is_written_with_its_interval_and_said_to_be_uncertain_when_the_gap_is_noise():
    from backend.concepts import CavSummary
    from backend.evaluation import EvaluationResult
    from backend.runs import ConceptOutcome

    before = EvaluationResult(clean_acc=0.9, attacked_acc=0.5, attack_source="transplanted")
    after = EvaluationResult(clean_acc=0.9, attacked_acc=0.8, attack_source="transplanted")
    assert ConceptOutcome(CavSummary(), None, None, before, after, [0.6, 0.9]).gap_closed_text() == "75% (60% to 90%)"
    noisy = ConceptOutcome(CavSummary(), None, None, before, after, [-30.0, 0.9]).gap_closed_text()
    assert "too uncertain to say" in noisy
    assert ConceptOutcome(CavSummary(), None, None, before, after).estimate_label == "unchecked estimate"
    checked = EvaluationResult(
        clean_acc=0.9, attacked_acc=0.8, attack_source="transplanted", estimate_check={"reliable": True}
    )
    assert ConceptOutcome(CavSummary(), None, None, checked, checked).estimate_label == "checked estimate"


def test_a_run_on_an_artifact_over_the_lesion_is_pointed_to_pasted_copies_unless_it_used_them():
    from backend.runs import lesion_overlap_advice

    def outcome(covered):
        check = {"reliable": False, "evidence_covered": covered}
        before = EvaluationResult(clean_acc=0.9, attacked_acc=0.5, attack_source="transplanted", estimate_check=check)
        return ConceptOutcome(CavSummary(), None, None, before, before)

    advice = lesion_overlap_advice(outcome(0.34), augment=0.0)
    assert advice and "34%" in advice and "augment 0.3" in advice
    assert lesion_overlap_advice(outcome(0.34), augment=0.3) is None, "it used them already"
    assert lesion_overlap_advice(outcome(0.05), augment=0.0) is None, "a corner artifact: nothing to say"
    measured = ConceptOutcome(CavSummary(), None, None, EvaluationResult(clean_acc=0.9, attacked_acc=0.5), None)
    assert lesion_overlap_advice(measured, augment=0.0) is None, "no check, no claim"
