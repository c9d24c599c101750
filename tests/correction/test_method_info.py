"""Methods describe themselves: which config field weights the penalty (and its default), whether they train and
need masks, and where their masks come from, so no client reads a config's field names."""

from dataclasses import dataclass

import pytest

from backend.correction import (
    CorrectionMethod,
    RRClarcConfig,
    RRRConfig,
    get_method,
    method_names,
    register_method,
)


def test_each_method_names_its_penalty_weight_and_its_default():
    weights = {name: get_method(name).penalty_weight for name in method_names()}
    assert weights == {"rrclarc": "lam", "rrr": "lam", "finetune": None, "aclarc": None, "pclarc": None}
    assert get_method("rrclarc").default_penalty_weight == RRClarcConfig().lam
    assert get_method("rrr").default_penalty_weight == RRRConfig().lam
    assert get_method("aclarc").default_penalty_weight is None


def test_the_penalty_weight_of_a_runs_options():
    rrclarc = get_method("rrclarc")
    assert rrclarc.penalty_weight_of({"lam": 3, "gradient_target": "max_logit"}) == 3.0
    assert rrclarc.penalty_weight_of({"gradient_target": "max_logit"}) == RRClarcConfig().lam
    assert rrclarc.penalty_weight_of(None) == RRClarcConfig().lam
    assert get_method("finetune").penalty_weight_of({"lam": 3}) is None


def test_methods_declare_training_and_masks():
    assert [n for n in method_names() if not get_method(n).trains] == ["pclarc"]
    assert [n for n in method_names() if get_method(n).needs_masks] == ["rrr"]
    assert get_method("rrr").factory(RRRConfig(mask_source="concept")).mask_source == "concept"
    assert get_method("rrclarc").factory(RRClarcConfig()).mask_source is None


def test_a_penalty_weight_must_be_a_field_of_the_config():
    @dataclass(frozen=True)
    class NoWeight:
        strength: float = 1.0

    with pytest.raises(ValueError, match="no field 'lam'"):
        register_method("weightless", config=NoWeight, description="x", penalty_weight="lam")(CorrectionMethod)
    assert "weightless" not in method_names()
