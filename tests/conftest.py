"""Shared fixtures: one temporary workspace for the whole session, so generated images are rendered once."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def run_backend(*args: str, timeout: float = 600, shell: bool = False) -> subprocess.CompletedProcess:
    """`python -m backend ARGS` from the repository root; its exit code and output captured as text. By default
    through `backend.cli.main` in this process, the function `python -m backend` calls, which spares each call the
    ~7 s of importing torch, torchvision and scikit-learn again; `shell=True` starts `python -m backend` as a user
    would (with `timeout`; in-process calls are bounded by the test's timeout)."""
    command = [sys.executable, "-m", "backend", *args]
    if shell:
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    from backend.cli import main

    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(ROOT)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's usage errors and --help
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(command, code, out.getvalue(), err.getvalue())


# Small splits keep tests fast while exercising the same generator and planting as the default.
SMALL_SPEC = "synthderm?n_train=120&n_val=30&n_test=60"


@pytest.fixture(scope="session", autouse=True)
def workspace(tmp_path_factory) -> Path:
    """A fresh workspace for the test session, also exported as CLARC_WORKSPACE for subprocesses and the app."""
    path = tmp_path_factory.mktemp("workspace")
    previous = os.environ.get("CLARC_WORKSPACE")
    os.environ["CLARC_WORKSPACE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("CLARC_WORKSPACE", None)
    else:
        os.environ["CLARC_WORKSPACE"] = previous


@pytest.fixture(scope="session")
def small_dataset(workspace):
    from backend.data import open_dataset

    return open_dataset(SMALL_SPEC, workspace)


@pytest.fixture(scope="session")
def embedded_dataset(workspace):
    """The embedded benchmark as the default model was trained on it (3,000 training images)."""
    from backend.data import open_dataset
    from backend.defaults import DEFAULT_DATASET

    return open_dataset(DEFAULT_DATASET, workspace)


@pytest.fixture(autouse=True)
def _no_stray_workers(request):
    """After a test with its own tmp_path, kill run workers still working in it (a test that failed midway can
    leave a 100,000-epoch victim running, which would slow every later test)."""
    folder = str(request.getfixturevalue("tmp_path")) if "tmp_path" in request.fixturenames else None
    yield
    if folder is None:
        return
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"backend.runs.execution.worker" in argv and any(
            a.decode(errors="replace").startswith(folder) for a in argv
        ):
            try:
                os.kill(int(proc.name), 9)
            except ProcessLookupError:
                pass
