"""A full disk while exporting: a clear error, no half-written file that looks complete, the previous export intact.
The disk is made "full" for real with a file-size limit (RLIMIT_FSIZE) on a child process."""

import subprocess
import sys

from backend.defaults import DEFAULT_CHECKPOINT
from backend.models import file_sha256, load_checkpoint, save_checkpoint
from tests.conftest import ROOT

_WRITER = """
import resource, signal, sys
from backend.errors import CheckpointError
from backend.models import load_checkpoint, save_checkpoint
model = load_checkpoint(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, like ENOSPC
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
try:
    save_checkpoint(model.module, model.meta, sys.argv[2])
except CheckpointError as exc:
    print(exc)
    sys.exit(3)
"""


def _export_on_a_full_disk(out) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _WRITER, str(DEFAULT_CHECKPOINT), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_failed_export_leaves_the_previous_one_intact(tmp_path):
    model = load_checkpoint(DEFAULT_CHECKPOINT)
    out = tmp_path / "export" / "model.safetensors"
    save_checkpoint(model.module, model.meta, out)
    before = file_sha256(out)
    done = _export_on_a_full_disk(out)
    assert done.returncode == 3, done.stderr
    assert "could not write the checkpoint" in done.stdout and "disk full?" in done.stdout
    assert file_sha256(out) == before  # the old export was not touched
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.json", "model.safetensors"]  # no temporary left
    load_checkpoint(out)


def test_a_failed_first_export_leaves_nothing_that_looks_complete(tmp_path):
    out = tmp_path / "fresh" / "model.safetensors"
    done = _export_on_a_full_disk(out)
    assert done.returncode == 3, done.stderr
    assert list(out.parent.iterdir()) == []
