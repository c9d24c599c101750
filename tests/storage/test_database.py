"""The workspace database: opening a store while another connection writes waits for it instead of failing."""

import sqlite3
import threading
import time

from backend.runs import RunStore
from backend.storage import AnnotationStore


def test_stores_open_while_another_process_holds_the_write_lock(tmp_path):
    AnnotationStore(tmp_path).set_labels("d", "c", {"s1": 1})  # the file exists, in WAL mode
    writer = sqlite3.connect(tmp_path / "studio.db", isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO annotations VALUES ('d', 'c', 's2', 0, 0)")
    release = threading.Timer(0.5, lambda: (writer.execute("COMMIT"), writer.close()))
    release.start()
    try:
        started = time.monotonic()
        store = AnnotationStore(tmp_path)
        RunStore(tmp_path)
        assert time.monotonic() - started >= 0.4  # it waited for the writer
        assert store.labels("d", "c") == {"s1": 1, "s2": 0}
    finally:
        release.join()
