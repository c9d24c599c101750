"""Figures declared once: every figure's label, unit and direction come from the evaluation result's fields, and
every reader writes them the same way."""

import pytest

from backend.evaluation import FIGURES, HEADLINE, EvaluationResult, Figure, figures_of


def test_every_figure_is_declared_on_the_result_with_a_label_and_a_direction():
    assert list(FIGURES) == [k for k in EvaluationResult.__dataclass_fields__ if k in FIGURES]
    assert set(HEADLINE) <= set(FIGURES)
    assert {k for k, f in FIGURES.items() if f.unit == "share"} == {
        "clean_acc",
        "attacked_acc",
        "with_artifact_acc",
        "without_artifact_acc",
    }
    assert all(f.higher_is_better == (f.unit == "share") for f in FIGURES.values())
    assert len({f.label for f in FIGURES.values()}) == len(FIGURES)
    assert figures_of(EvaluationResult) == FIGURES


def test_a_share_is_written_in_percent_and_changes_in_points():
    acc = FIGURES["attacked_acc"]
    assert acc.text(0.8234) == "82.3%" and acc.text(None) == "–"
    assert acc.change_text(0.5, 0.668) == "+16.8 pts"
    assert acc.improved(0.5, 0.668) is True and acc.improved(0.6, 0.5) is False
    assert acc.improved(0.5, 0.5004) is None  # "+0.0 pts" is no change, not an improvement


def test_a_value_whose_fall_is_the_improvement():
    sensitivity = FIGURES["tcav_sensitivity"]
    assert sensitivity.text(0.70812) == "0.708" and sensitivity.change_text(0.708, 0.020) == "-0.688"
    assert sensitivity.improved(0.708, 0.020) is True and sensitivity.improved(0.02, 0.7) is False
    assert Figure("x", "x", "value", False).change(None, 1.0) is None


def test_an_older_record_with_fewer_fields_still_reads():
    old = {"clean_acc": 0.9, "attacked_acc": 0.6, "attack_source": "planted", "unknown_key": 1}
    result = EvaluationResult.from_dict(old)
    assert result.clean_acc == 0.9 and result.attacked_acc == 0.6 and result.clean_acc_per_class == {}
    assert EvaluationResult.from_dict(result.to_dict()) == result
    with pytest.raises(TypeError):
        EvaluationResult.from_dict({"attacked_acc": 0.5})  # clean accuracy is always measured
