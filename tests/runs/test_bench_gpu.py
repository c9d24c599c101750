"""`bench gpu` without a GPU: asked for CUDA it refuses in one clear line; with `--device cpu` it runs its whole
comparison (stages, agreement, two corrections) CPU against CPU, which must agree exactly."""

import pytest
import torch

from backend.bench.gpu import GpuBench, bench_gpu
from backend.errors import ConfigError
from tests.conftest import SMALL_SPEC


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_bench_gpu_without_a_gpu_says_so_and_measures_nothing():
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        bench_gpu(GpuBench(device="cuda", images=16, epochs=1, dataset=SMALL_SPEC))


def test_bench_gpu_compares_the_cpu_with_itself_exactly(small_dataset):
    result = bench_gpu(GpuBench(device="cpu", images=32, epochs=1, dataset=SMALL_SPEC)).to_json()
    assert result["device"] == "cpu" and result["agree"]
    assert result["agreement"]["max_logit_diff"] < 1e-4 and result["agreement"]["same_prediction"] == 1.0
    assert result["agreement"]["heatmap_correlation"] > 0.9999
    assert set(result["stages"]) == {"single_pass", "heatmaps"}
    assert result["accuracy_diff"] == {"clean_acc": 0.0, "attacked_acc": 0.0}  # same device, same seed
