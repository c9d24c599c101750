"""What leaves the pipeline holds no patient data: model cards, run logs and records of a correction on an ISIC-style
folder carry sample ids, never the CSV's patient fields or image pixels."""

import json

import numpy as np
from PIL import Image

from backend.correction import LoopConfig
from backend.runs import CorrectionJob, LocalExecutor
from tests.conftest import run_backend

PATIENT_VALUES = ("IP_7279968", "IL_5418206", "lower extremity")  # patient id, lesion id, anatomical site
PATIENT_COLUMNS = ("patient_id", "lesion_id", "sex", "age_approx", "anatom_site_general_challenge")


def _isic_2020(root) -> None:
    rng = np.random.default_rng(0)
    lines = [
        "image_name,patient_id,lesion_id,sex,age_approx,anatom_site_general_challenge,diagnosis,benign_malignant,target"
    ]
    for i in range(80):
        malignant = i % 3 == 0
        colour = (90, 50, 40) if malignant else (180, 130, 100)
        pixels = np.clip(rng.normal(colour, 25, size=(40, 40, 3)), 0, 255).astype(np.uint8)
        (root / "train").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / "train" / f"ISIC_{i:07d}.png")
        lines.append(
            f"ISIC_{i:07d},IP_7279968,IL_5418206,female,71,lower extremity,nevus,"
            f"{'malignant' if malignant else 'benign'},{int(malignant)}"
        )
    (root / "ISIC_2020_Training_GroundTruth.csv").write_text("\n".join(lines) + "\n")


def _longest_list(value) -> int:
    if isinstance(value, dict):
        return max((_longest_list(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return max([len(value), *(_longest_list(v) for v in value)])
    return 0


def test_cards_logs_and_run_records_hold_no_patient_fields_or_pixels(tmp_path):
    data = tmp_path / "isic"
    _isic_2020(data)
    spec = f"isic:{data}?size=32&artifact=skin_marker&classes=malignant&p=0.5"
    workspace = tmp_path / "ws"
    model = tmp_path / "model.safetensors"
    done = run_backend("train", "--dataset", spec, "--epochs", "2", "--out", str(model), "--workspace", str(workspace))
    assert done.returncode == 0, done.stderr
    executor = LocalExecutor(workspace)
    job = CorrectionJob(out="x", checkpoint=str(model), dataset=spec, loop=LoopConfig(epochs=2))
    (record,) = executor.wait([executor.submit(job)], timeout=240)
    assert record.status == "succeeded", record.error
    texts = {
        path: path.read_text(errors="replace") for path in workspace.rglob("*") if path.suffix in (".json", ".log")
    }
    texts |= {model.with_suffix(".json"): model.with_suffix(".json").read_text()}
    texts["run record"] = json.dumps(record.to_dict())
    assert len(texts) >= 5  # both cards, the run's log and worker log, the record
    for where, text in texts.items():
        for value in PATIENT_VALUES + PATIENT_COLUMNS:
            assert value not in text, (where, value)
    for card in (model.with_suffix(".json"), record.outputs["card"]):
        content = json.loads(open(card).read())
        assert _longest_list(content) < 32 * 32, card  # CAV vectors and histories only: no image is stored
