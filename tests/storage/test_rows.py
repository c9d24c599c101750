"""Row caches: rows are filled on demand and read back bit for bit, a filled row keeps its first values, missing or
damaged files are rebuilt (with a warning) and never trusted, and threads and processes fill one cache together
without a wrong row ever being read, while readers never wait for a writer's lock."""

import logging
import multiprocessing
import threading

import numpy as np
import pytest

from backend.storage import RowCache, file_lock

SHAPE = (40, 3, 5)


def _row(i: int) -> np.ndarray:
    """The one right value of row `i`."""
    return (np.arange(15, dtype=np.float32).reshape(3, 5) + np.float32(i)) / np.float32(7)


def _rows(indices) -> np.ndarray:
    return np.stack([_row(i) for i in indices]) if len(indices) else np.zeros((0, 3, 5), dtype=np.float32)


def test_rows_are_filled_on_demand_and_read_back_bit_for_bit(tmp_path):
    cache = RowCache(tmp_path / "c", SHAPE, np.float32)
    found, values = cache.fetch([3, 1])
    assert not found.any() and values.shape == (2, 3, 5) and not values.any()
    assert cache.filled() is None and cache.complete() is None and cache.prefix() is None
    cache.write([7, 3, 3], _rows([7, 3, 3]))
    found, values = cache.fetch([3, 5, 7, 3])
    assert found.tolist() == [True, False, True, True]
    assert values[[0, 2, 3]].tobytes() == _rows([3, 7, 3]).tobytes() and not values[1].any()
    assert np.flatnonzero(cache.filled()).tolist() == [3, 7]
    assert np.flatnonzero(np.load(cache.filled_path)).tolist() == [3, 7]  # the flags are a .npy of bools
    cache.write([3], _rows([5]))  # a filled row keeps its first values
    assert cache.fetch([3])[1].tobytes() == _row(3).tobytes()
    assert len(cache.prefix()) == 0
    cache.write(range(4), _rows(range(4)))
    assert cache.prefix().tobytes() == _rows(range(4)).tobytes()  # the rows before the first unfilled one
    assert cache.complete() is None
    cache.write(range(40), _rows(range(40)))
    whole = cache.complete()
    assert isinstance(whole, np.memmap) and not whole.flags.writeable
    assert whole.tobytes() == _rows(range(40)).tobytes()
    assert RowCache(tmp_path / "c").prefix().tobytes() == whole.tobytes()  # a reader may take what is stored
    cache.remove()
    assert cache.filled() is None and cache.lock_path.exists()


@pytest.mark.parametrize(
    "damage",
    [
        lambda c: c.values_path.write_bytes(b"not a numpy file"),
        lambda c: c.values_path.write_bytes(c.values_path.read_bytes()[:500]),  # truncated
        lambda c: c.filled_path.write_bytes(b"\x93NUMPY garbage"),
        lambda c: c.values_path.unlink(),
        lambda c: c.filled_path.unlink(),
        lambda c: np.save(c.filled_path, np.ones(SHAPE[0] + 1, dtype=bool)),  # flags of another length
        lambda c: np.lib.format.open_memmap(c.values_path, "w+", np.float64, SHAPE).flush(),  # another dtype
    ],
)
def test_missing_or_damaged_files_are_rebuilt_never_trusted(tmp_path, caplog, damage):
    cache = RowCache(tmp_path / "c", SHAPE, np.float32)
    cache.write([0, 2], _rows([0, 2]))
    damage(cache)
    found, _ = cache.fetch([0, 2])
    assert not found.any() and cache.complete() is None  # nothing read from damaged files
    with caplog.at_level(logging.WARNING, logger="backend.storage.rows"):
        cache.write([2, 4], _rows([2, 4]))
    assert "rebuilding" in caplog.text
    found, values = cache.fetch([0, 2, 4])
    assert found.tolist() == [False, True, True] and values[1:].tobytes() == _rows([2, 4]).tobytes()
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_a_cache_of_another_shape_is_rebuilt_for_this_one(tmp_path):
    RowCache(tmp_path / "c", (10, 3, 5), np.float32).write([1], _rows([1]))
    cache = RowCache(tmp_path / "c", SHAPE, np.float32)
    assert not cache.fetch([1])[0].any()
    cache.write([1], _rows([1]))
    assert np.load(cache.values_path, mmap_mode="r").shape == SHAPE


def _fill(stem, writer: int, seed: int) -> dict[int, bytes]:
    """Write every row, two at a time in a random order, as `writer`'s value of it, reading all rows back after each
    write: what this writer saw of each row, or an AssertionError if a row read back was torn, changed or vanished."""
    cache = RowCache(stem, SHAPE, np.float32, durable=True)
    order = np.random.default_rng(seed).permutation(SHAPE[0])
    seen: dict[int, bytes] = {}
    for start in range(0, len(order), 2):
        batch = order[start : start + 2]
        cache.write(batch, _rows(batch) + np.float32(writer))
        found, values = cache.fetch(range(SHAPE[0]))
        assert found[batch].all() and set(seen) <= set(np.flatnonzero(found)), "a filled row vanished"
        for i in np.flatnonzero(found).tolist():
            assert values[i].tobytes() == seen.setdefault(i, values[i].tobytes()), f"row {i} changed"
            assert any(values[i].tobytes() == (_row(i) + np.float32(w)).tobytes() for w in (0, 1, 2, 3)), "torn"
    return seen


def _final(stem) -> dict[int, bytes]:
    whole = RowCache(stem, SHAPE, np.float32).complete()
    return {i: whole[i].tobytes() for i in range(SHAPE[0])}


def test_two_processes_fill_one_cache_and_keep_the_first_value_of_each_row(tmp_path):
    stem = tmp_path / "c"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        seen = pool.starmap(_fill, [(stem, writer, writer) for writer in (0, 1)])
    assert seen[0] == seen[1] == _final(stem)  # both saw each row's first value, and it stayed


def test_threads_fill_one_cache_and_keep_the_first_value_of_each_row(tmp_path):
    stem = tmp_path / "c"
    seen = {}
    threads = [threading.Thread(target=lambda k=k: seen.__setitem__(k, _fill(stem, k, k))) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 4 and all(s == _final(stem) for s in seen.values())


def test_readers_never_wait_for_a_writer_and_a_held_lock_serves_a_series_of_writes(tmp_path):
    cache = RowCache(tmp_path / "c", SHAPE, np.float32)
    other = RowCache(tmp_path / "d", SHAPE, np.float32)
    with file_lock([other.lock_path, cache.lock_path]):  # a pass holding both caches' locks
        cache.write(range(10), _rows(range(10)), held=True)
        other.write(range(5), _rows(range(5)), held=True)
        done = threading.Event()
        reader = threading.Thread(target=lambda: (cache.prefix(), cache.fetch([1]), cache.complete(), done.set()))
        reader.start()
        assert done.wait(10), "a reader waited for the writer's lock"
        assert cache.prefix().tobytes() == _rows(range(10)).tobytes()
        blocked = threading.Event()
        writer = threading.Thread(target=lambda: (cache.write([20], _rows([20])), blocked.set()))
        writer.start()
        assert not blocked.wait(0.3), "another writer wrote while the lock was held"
    assert blocked.wait(10) and cache.fetch([20])[0].all()
    with file_lock([cache.lock_path, other.lock_path]):  # the same locks in another order: no deadlock
        pass
