"""Sessions of the dashboard share one loaded model: heatmaps and activations computed from several threads at
once must equal those computed one after the other (hooks and LRP rules change the module in place)."""

import threading

import numpy as np
import pytest
import torch

from backend.attribution import class_heatmaps
from backend.concepts import collect_activations
from backend.data import view_batch
from backend.defaults import DEFAULT_CHECKPOINT
from backend.models import load_checkpoint


@pytest.fixture
def one_thread():
    """One torch thread for the test (the threads then interleave as on a busy server), restored afterwards: the
    rest of the suite runs in this process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_concurrent_heatmaps_and_activations_equal_sequential_ones(small_dataset, one_thread):
    model = load_checkpoint(DEFAULT_CHECKPOINT)
    view = small_dataset.split("train")
    x, _ = view_batch(view, range(16), model.meta.normalization)
    expected_maps = class_heatmaps(model, x).maps
    expected_acts = collect_activations(model, view, "features.13", "max", indices=np.arange(32))
    results, errors = {"maps": [], "acts": []}, []

    def heatmaps() -> None:
        try:
            for _ in range(6):
                results["maps"].append(class_heatmaps(model, x).maps)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def activations() -> None:
        try:
            for _ in range(6):
                results["acts"].append(collect_activations(model, view, "features.13", "max", indices=np.arange(32)))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=f) for f in (heatmaps, activations, heatmaps, activations)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(results["maps"]) == 12 and len(results["acts"]) == 12
    for maps in results["maps"]:
        np.testing.assert_allclose(maps, expected_maps, atol=1e-5)
    for acts in results["acts"]:
        np.testing.assert_allclose(acts, expected_acts, atol=1e-5)
    assert not any(m._forward_hooks for m in model.module.modules())  # every hook removed
