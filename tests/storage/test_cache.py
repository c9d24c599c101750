"""Cache keys and whole-array caches: a key changes with every field and nothing else, an array is computed once and
read back bit for bit, and a corrupt or misshapen file is computed again (and rewritten), never trusted."""

import logging
from types import SimpleNamespace

import numpy as np
import pytest

from backend.storage import CacheKey, cached_array, digest_lines, stored_array


def _view(split="train", view="as_planted", attack_key=None, ids=("a", "b", "c")):
    return SimpleNamespace(split=split, view=view, attack_key=attack_key, sample_ids=ids)


def test_a_key_is_stable_and_every_field_changes_it():
    base = CacheKey("heatmaps", "model", "data", "train", "clean", "samples", 1, {"layer": "f.2", "pooling": "max"})
    assert (
        base.digest()
        == CacheKey(
            "heatmaps", "model", "data", "train", "clean", "samples", 1, {"pooling": "max", "layer": "f.2"}
        ).digest()
    )  # the order of extra fields does not matter
    assert len(base.digest()) == 20 and base == CacheKey(**vars(base)) and hash(base) == hash(CacheKey(**vars(base)))
    changed = [
        CacheKey("outliers", *list(vars(base).values())[1:]),
        *(
            CacheKey(**vars(base) | {name: value})
            for name, value in [("model", "m2"), ("dataset", "d2"), ("split", "val"), ("view", "attacked")]
        ),
        CacheKey(**vars(base) | {"samples": "other"}),
        CacheKey(**vars(base) | {"version": 2}),
        CacheKey(**vars(base) | {"extra": {"layer": "f.3", "pooling": "max"}}),
        CacheKey(**vars(base) | {"extra": {"layer": "f.2", "pooling": "max", "artifact": None}}),
    ]
    digests = {key.digest() for key in changed}
    assert len(digests) == len(changed) and base.digest() not in digests


def test_a_view_key_covers_the_split_view_attack_and_samples(tmp_path):
    key = CacheKey.of_view("activations", "model", "data", _view(), layer="f.2")
    assert (key.split, key.view, key.samples) == ("train", "as_planted", digest_lines(["a", "b", "c"]))
    assert dict(key.extra) == {"artifact": None, "layer": "f.2"}
    others = [
        _view(split="val"),
        _view(view="attacked"),
        _view(attack_key="ruler:0"),
        _view(ids=("a", "b")),
    ]
    assert all(CacheKey.of_view("activations", "model", "data", v, layer="f.2") != key for v in others)
    subset = CacheKey.of_view("activations", "model", "data", _view(), samples=digest_lines(["b"]), layer="f.2")
    assert subset.digest() != key.digest()
    derived = key.derive("outliers", features=16)
    assert derived.kind == "outliers" and dict(derived.extra) == {"artifact": None, "layer": "f.2", "features": 16}
    assert key.path(tmp_path) == tmp_path / "cache" / "activations" / f"{key.digest()}.npy"
    assert key.path(tmp_path, suffix="").name == key.digest() and key.path(tmp_path).parent.is_dir()


def test_an_array_is_computed_once_and_read_back_bit_for_bit(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32) / 3

    path = tmp_path / "c" / "x.npy"
    assert stored_array(path) is None
    cold = cached_array(path, compute, (5, 3), np.float32)
    warm = cached_array(path, compute, (5, 3), np.float32)
    assert len(calls) == 1
    assert cold.tobytes() == warm.tobytes() and warm.dtype == np.float32
    np.testing.assert_array_equal(stored_array(path, (5, 3)), cold)
    assert not [p for p in path.parent.iterdir() if p != path]  # no temporary file left


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(b"not a numpy file"),
        lambda p: p.write_bytes(p.read_bytes()[:100]),  # truncated
        lambda p: np.save(p, np.zeros((4, 3), dtype=np.float32)),  # another shape
        lambda p: np.save(p, np.zeros((5, 3), dtype=np.float64)),  # another dtype
        lambda p: np.save(p, np.array([object()] * 15).reshape(5, 3)),  # pickled objects are never loaded
    ],
)
def test_a_corrupt_file_is_computed_again_and_rewritten(tmp_path, caplog, damage):
    path = tmp_path / "x.npy"
    expected = np.arange(15, dtype=np.float32).reshape(5, 3)
    cached_array(path, lambda: expected, (5, 3), np.float32)
    damage(path)
    with caplog.at_level(logging.WARNING, logger="backend.storage.cache"):
        assert stored_array(path, (5, 3), np.float32) is None
        again = cached_array(path, lambda: expected * 1, (5, 3), np.float32)
    assert "computing it again" in caplog.text
    np.testing.assert_array_equal(again, expected)
    np.testing.assert_array_equal(np.load(path), expected)  # the damaged file is replaced


def test_a_failed_computation_stores_nothing(tmp_path):
    path = tmp_path / "x.npy"

    def fail():
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError):
        cached_array(path, fail)
    assert not list(tmp_path.iterdir())
