"""The cluster engine against a real local Ray runtime on 127.0.0.1: runs become Ray tasks executed by real Ray
workers, and their status and results flow back into the same run store."""

import os
import shutil
import socket
import subprocess
import tempfile

import pytest

from backend.correction import LoopConfig
from backend.runs import ConceptSpec, CorrectionJob
from tests.conftest import ROOT, SMALL_SPEC

# Keep every Ray socket on the loopback interface (Ray's own switch for single-machine runtimes).
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(scope="module")
def ray_address():
    saved = {k: os.environ.get(k) for k in LOOPBACK_ENV}
    os.environ.update(LOOPBACK_ENV)  # before ray is imported: it reads them at import time
    import ray  # noqa: F401  (requirements-ray.txt, which the test command installs)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    env = dict(os.environ, **LOOPBACK_ENV, PYTHONPATH=str(ROOT))
    start = [
        "ray",
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--num-cpus=2",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
    ]
    subprocess.run(start, cwd=ROOT, env=env, check=True, capture_output=True, timeout=180)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        import ray

        ray.shutdown()
        subprocess.run(["ray", "stop", "--force"], env=env, capture_output=True, timeout=120)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(temp, ignore_errors=True)


def test_runs_execute_as_ray_tasks_and_report_to_the_store(ray_address, tmp_path):
    from backend.runs import RayExecutor

    executor = RayExecutor(ray_address, tmp_path)
    good = executor.submit(CorrectionJob(out="", dataset=SMALL_SPEC, loop=LoopConfig(epochs=2, device="cpu")))
    bad = executor.submit(
        CorrectionJob(out="", dataset=SMALL_SPEC, concepts=(ConceptSpec(labels=str(tmp_path / "missing.csv")),))
    )
    records = {r.id: r for r in executor.wait([good, bad], timeout=300)}
    assert records[good].status == "succeeded", records[good].error
    assert records[good].engine == "ray" and len(records[good].history) == 2
    assert records[good].pid != os.getpid()  # executed by a Ray worker process
    assert os.path.exists(records[good].outputs["checkpoint"])
    assert records[bad].status == "failed" and "cannot read concept labels" in records[bad].error
