"""The single pass: logits and several layers' activations from one forward pass, equal to separate collection,
cached for later requests, readable while it runs, and cancellable without leaving half-written entries."""

import threading

import numpy as np
import pytest
import torch

from backend.concepts import (
    PassCancelled,
    activation_entry,
    cached_activations,
    collect_activations,
    collect_in_one_pass,
    read_partial,
)
from backend.defaults import DEFAULT_CHECKPOINT
from backend.models import load_checkpoint

LAYER = "features.20"


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(DEFAULT_CHECKPOINT)


class _Forwards:
    """Counts the model's forward passes over batches of images with a real hook on its first module (the dry
    runs on one blank image that find layer shapes do not count)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.n = 0
        self._handle = next(iter(module.children())).register_forward_hook(self._count)

    def _count(self, _module, inputs, _output) -> None:
        self.n += inputs[0].shape[0] > 1

    def remove(self) -> None:
        self._handle.remove()


def test_one_pass_equals_separate_collection_and_is_cached(model, small_dataset, tmp_path):
    view = small_dataset.split("val")
    wanted = [(model.output_layer(), "none"), (LAYER, "max"), (LAYER, "mean"), (LAYER, "none")]
    forwards = _Forwards(model.module)
    try:
        found = collect_in_one_pass(model, view, small_dataset.dataset_id, wanted, workspace=tmp_path, batch_size=8)
        assert forwards.n == -(-len(view) // 8)  # one pass over the split for all four
        for layer, pooling in wanted:
            expected = collect_activations(model, view, layer, pooling)
            np.testing.assert_allclose(found[(layer, pooling)].values, expected, rtol=1e-5, atol=1e-5)
        forwards.n = 0
        again = cached_activations(model, view, small_dataset.dataset_id, LAYER, "max", workspace=tmp_path)
        assert forwards.n == 0  # a file read
        np.testing.assert_array_equal(again.values, found[(LAYER, "max")].values)
    finally:
        forwards.remove()


def test_partial_rows_are_readable_while_the_pass_runs(model, small_dataset, tmp_path):
    view = small_dataset.split("val")
    logits = (model.output_layer(), "none")
    entry = activation_entry(model, view, small_dataset.dataset_id, *logits, view.sample_ids, tmp_path)
    seen = []
    collect_in_one_pass(
        model,
        view,
        small_dataset.dataset_id,
        [logits],
        workspace=tmp_path,
        batch_size=8,
        on_progress=lambda event: seen.append((event.metrics["samples"], read_partial(entry))),
    )
    assert [len(rows) for _, rows in seen] == [samples for samples, _ in seen]  # whole batches, in order
    final = read_partial(entry)
    assert len(final) == len(view)
    np.testing.assert_array_equal(seen[0][1], final[: len(seen[0][1])])


def test_a_cancelled_pass_leaves_nothing_and_a_later_one_completes(model, small_dataset, tmp_path):
    view = small_dataset.split("val")
    cancel = threading.Event()
    with pytest.raises(PassCancelled, match="cancelled after 8 of"):
        collect_in_one_pass(
            model,
            view,
            small_dataset.dataset_id,
            [(LAYER, "mean")],
            workspace=tmp_path,
            batch_size=8,
            on_progress=lambda _: cancel.set(),
            cancel=cancel,
        )
    assert not [p for p in (tmp_path / "cache" / "activations").glob("*") if p.suffix != ".lock"]
    done = collect_in_one_pass(model, view, small_dataset.dataset_id, [(LAYER, "mean")], workspace=tmp_path)
    assert done[(LAYER, "mean")].values.shape == (len(view), 128)
