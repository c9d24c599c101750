"""`bench soak --quick`: annotation writers and run workers SIGKILLed, corrupt imports, corrupt or missing
checkpoints, labels of unknown samples and cancellations, with nothing acknowledged lost and every run true."""

import json

from tests.conftest import run_backend

ANNOTATION_FAULTS = ("writer_sigkill", "corrupt_import", "import_bad_rows")
RUN_FAULTS = ("worker_sigkill", "corrupt_checkpoint", "missing_checkpoint", "unknown_label_ids", "cancel")


def test_quick_soak_loses_no_acknowledged_write_and_leaves_no_run_in_a_false_state(tmp_path):
    out = tmp_path / "soak.json"
    done = run_backend("bench", "soak", "--quick", "--workspace", str(tmp_path / "ws"), "--json", str(out), timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["acknowledged_writes_lost"] == 0, done.stdout
    assert result["runs_in_false_state"] == 0, result["false_states"]
    assert result["integrity_check"] == "ok"
    assert not any(result["annotation_anomalies"].values()), result["annotation_anomalies"]
    faults = result["faults_injected"]
    assert all(faults.get(kind, 0) > 0 for kind in ANNOTATION_FAULTS + RUN_FAULTS), faults
    assert result["operations"] >= 150 and result["runs_submitted"] == result["runs_planned"] == 6
    assert sum(result["runs"].values()) == 6 and set(result["runs"]) <= {"succeeded", "failed", "cancelled"}
    assert result["runs_by_fault"]["ok"] == {"succeeded": 1}
    assert result["seconds"] > 0 and "acknowledged writes lost   0" in done.stdout
