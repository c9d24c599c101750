"""Same job config, same model and figures: whether the activation cache is cold (a fresh workspace) or warm, a
correction ends in bit-identical weights on the cached path."""

from dataclasses import replace

import torch
from safetensors.torch import load_file

from backend.correction import LoopConfig
from backend.runs import CorrectionJob, run_correction_job
from tests.conftest import SMALL_SPEC


def test_a_cold_and_a_warm_cache_give_the_same_model(tmp_path):
    job = CorrectionJob(out="", dataset=SMALL_SPEC, loop=LoopConfig(epochs=2, device="cpu"))
    runs = [
        run_correction_job(replace(job, out=str(tmp_path / name)), workspace=tmp_path / workspace).to_dict()
        for name, workspace in (("cold", "one"), ("warm", "one"), ("other", "two"))
    ]
    assert all(r["cached_path"] for r in runs)
    weights = [load_file(r["checkpoint"]) for r in runs]
    for other in weights[1:]:
        assert all(torch.equal(weights[0][k], other[k]) for k in weights[0])
    assert runs[0]["history"] == [
        {**h, "seconds": runs[0]["history"][i]["seconds"]} for i, h in enumerate(runs[1]["history"])
    ]
    assert runs[0]["after"] == runs[1]["after"] == runs[2]["after"]
