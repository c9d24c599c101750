"""`bench natural`: a correction measured on data whose artifact the library did not plant, as a user with an image
folder sees it.

The bench writes an image folder (`folder:` layout, train/val/test) of SynthDerm lesions in which an artifact drawn
here (a round colour-calibration sticker, not one of `data.artifacts`) sits in a share of the melanoma training and
validation images, and beside it the true attacked test folder: the same test images, each with a sticker. It trains
a model on the folder (it learns the shortcut), takes the sticker labels as a user's annotation file, and corrects
with the defaults a user gets (the CAV fitted from the labels, attacked figures from the transplant attack). It
reports the transplant's estimate of attacked accuracy against the true attacked folder's, before and after, for both
CAV scopes, RR-ClArC's closure of the clean-vs-attacked gap on the true folder, and fine-tuning as the control.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from backend.bench.registry import BenchOptions, BenchResult, register_bench
from backend.concepts import resolve_cav
from backend.correction import LoopConfig
from backend.data import open_dataset
from backend.data.synthderm import SYNTHDERM_CLASSES, render_sample, sample_label
from backend.evaluation import AttackConfig, evaluate
from backend.models import load_checkpoint, save_checkpoint
from backend.options import option, switch
from backend.runs import ConceptSpec, CorrectionJob, run_correction_job
from backend.storage import resolve_workspace
from backend.training import TrainConfig, train_model

ATTACKED_CLASS = "melanoma"
_SEED = 7  # SynthDerm images other than the embedded benchmark's (seed 0)
_SPLITS = ("train", "val", "test")


@dataclass(frozen=True, kw_only=True)
class FolderBench(BenchOptions):
    """A bench on an image folder it writes, with artifacts in a share of some classes' images, and a model it trains
    on the folder (both once per configuration)."""

    n_train: int = option(3000, help="training images of the folder")
    p: float = option(0.3, help="share of each planted class's training images with its artifact")
    epochs: int = option(12, help="epochs of the biased model's training")
    quick: bool = switch(help="600 training images, 6 epochs: a smoke test")
    root: str | None = option(None, help="where to write the folders and models (default <workspace>/bench-NAME)")

    def folder(self, name: str) -> tuple[Path, Path, int, int]:
        """The workspace, the folder's root (--root, else bench-NAME in the workspace), its training images and the
        model's epochs (600 and 6 with --quick)."""
        workspace = resolve_workspace(self.workspace)
        root = Path(self.root) if self.root else workspace / f"bench-{name}"
        return (workspace, root, *((600, 6) if self.quick else (self.n_train, self.epochs)))


@dataclass(frozen=True, kw_only=True)
class CorrectionFolderBench(FolderBench):
    """A folder bench that corrects the model it trained."""

    correction_epochs: int = option(20, help="epochs of each correction")
    quick: bool = switch(help="600 training images, 6 + 5 epochs: a smoke test")

    def correction_budget(self) -> int:
        """Epochs of each correction: 5 with --quick."""
        return 5 if self.quick else self.correction_epochs


@dataclass(frozen=True, kw_only=True)
class NaturalBench(CorrectionFolderBench):
    """correction on an image folder with an artifact the library did not plant: transplant estimate vs the true
    attacked folder, both CAV scopes, fine-tuning as control"""


@dataclass(frozen=True)
class NaturalResult(BenchResult):
    images: int
    p: float
    attacked_class: str
    before: dict  # the true attacked folder's figures, and the transplant's estimate of attacked accuracy
    runs: dict[str, dict]  # name -> cav_scope, transplanted, true, clean, after, gap_closed_true, ...
    seconds: float

    def lines(self) -> list[str]:
        rr = self.runs["rrclarc_attacked_class"]
        return [
            f"RR-ClArC with defaults closes {rr['gap_closed_true']:.0%} of the gap on the true attacked folder at "
            f"{rr['clean_change_points']:+.1f} points of clean accuracy; the transplant estimate is off by "
            f"{rr['transplant_error_points']['before']:+.1f} points before and "
            f"{rr['transplant_error_points']['after']:+.1f} after"
        ]


def draw_sticker(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A round colour-calibration sticker (a white rim, a teal or orange disc, a dark cross) near the image border,
    drawn 4x supersampled; returns the image and the mask of the sticker."""
    h, w, _ = image.shape
    scale = 4
    size = h * scale
    canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    radius = rng.uniform(0.10, 0.14) * size
    angle = rng.uniform(0, 2 * np.pi)
    cx, cy = size / 2 + np.cos(angle) * size * 0.34, size / 2 + np.sin(angle) * size * 0.34
    disc = (40, 150, 140) if rng.random() < 0.7 else (225, 120, 40)
    inner, bar = radius * 0.78, radius * 0.12
    draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=(245, 245, 240, 255))
    draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=(*disc, 255))
    draw.rectangle([cx - inner * 0.7, cy - bar, cx + inner * 0.7, cy + bar], fill=(20, 30, 30, 255))
    draw.rectangle([cx - bar, cy - inner * 0.7, cx + bar, cy + inner * 0.7], fill=(20, 30, 30, 255))
    layer = np.asarray(canvas.resize((w, h), Image.LANCZOS), dtype=np.float64) / 255
    alpha = np.clip(layer[..., 3:], 0, 1)
    out = image.astype(np.float64) / 255 * (1 - alpha) + layer[..., :3] * alpha
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8), alpha[..., 0] > 0.05


def write_folders(root: Path, n_train: int, p: float, size: int = 64) -> dict:
    """The clean folder (`root/images`, stickers in a share `p` of the melanoma train/val images), the true attacked
    test folder (`root/attacked/test`: every test image with a sticker) and the annotation file (`root/labels.csv`:
    the training images that show a sticker). Written once per configuration (a marker file says which)."""
    config = {"n_train": n_train, "p": p, "size": size, "seed": _SEED, "version": 2}
    marker = root / "bench.json"
    if marker.is_file() and json.loads(marker.read_text()) == config:
        return config
    counts = {"train": n_train, "val": n_train // 5, "test": n_train * 3 // 10}
    stickered = []
    for split in _SPLITS:
        for i in range(counts[split]):
            label = sample_label(_SEED, split, i)
            image = render_sample(_SEED, split, i, label, size)
            rng = np.random.default_rng([_SEED, i, _SPLITS.index(split)])
            name = f"{split}/{SYNTHDERM_CLASSES[label]}/{split}_{i:05d}"
            clean = image
            if split != "test" and SYNTHDERM_CLASSES[label] == ATTACKED_CLASS and rng.random() < p:
                clean = draw_sticker(image, rng)[0]
                if split == "train":
                    stickered.append(name)
            save_png(root / "images" / f"{name}.png", clean)
            if split == "test":
                save_png(root / "attacked" / f"{name}.png", draw_sticker(image, rng)[0])
    write_artifact_labels(root / "labels.csv", stickered)
    marker.write_text(json.dumps(config))
    return config


def save_png(path: Path, image: np.ndarray) -> None:
    """One image of a bench folder, its folders made as needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def trained_once(path: Path, spec: str, epochs: int, workspace: Path):
    """The model at `path`, trained on `spec` (CPU, `epochs`) and saved there first if it is not there yet."""
    if not path.is_file():
        result = train_model(TrainConfig(dataset=spec, epochs=epochs, device="cpu"), workspace=workspace)
        save_checkpoint(result.model.module, result.model.meta, path)
    return load_checkpoint(path)


def folder_model(root: Path, n_train: int, epochs: int, workspace: Path):
    """The spec of the folder under `root`, the model trained on it (`epochs`, once: `root/model-N-E.safetensors`),
    that checkpoint and the folder opened as a dataset."""
    spec = f"folder:{root / 'images'}?size=64"
    checkpoint = root / f"model-{n_train}-{epochs}.safetensors"
    return spec, checkpoint, trained_once(checkpoint, spec, epochs, workspace), open_dataset(spec, workspace)


def write_artifact_labels(path: Path, sample_ids: list[str]) -> None:
    """A user's annotation file: the samples that show the artifact (`sample_id,label` with label 1)."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sample_id", "label"])
        writer.writerows([sid, 1] for sid in sample_ids)


def _figures(evaluation) -> dict:
    return {
        "clean_acc": evaluation.clean_acc,
        "attacked_acc": evaluation.attacked_acc,
        "tcav_sensitivity": evaluation.tcav_sensitivity,
        "r_bias": evaluation.r_bias,
    }


@register_bench("natural", NaturalBench)
def bench_natural(opts: NaturalBench) -> NaturalResult:
    workspace, root, n_train, epochs = opts.folder("natural")
    correction_epochs = opts.correction_budget()
    t0 = time.perf_counter()
    write_folders(root, n_train, opts.p)
    spec, checkpoint, model, dataset = folder_model(root, n_train, epochs, workspace)
    truth = AttackConfig(attack="supplied", attacked_dataset=f"folder:{root / 'attacked'}")
    labels = str(root / "labels.csv")
    print(
        f"folder {root}: {n_train} training images, stickers in {opts.p:.0%} of the melanomas; model {checkpoint.name}"
    )

    runs, before = {}, None
    for name, method, scope in (
        ("rrclarc_attacked_class", "rrclarc", "attacked_class"),
        ("rrclarc_all", "rrclarc", "all"),
        ("finetune", "finetune", "attacked_class"),
    ):
        job = CorrectionJob(
            out=str(root / "runs" / name),
            checkpoint=str(checkpoint),
            dataset=spec,
            method=method,
            concepts=(ConceptSpec(labels=labels),),
            cav_scope=scope,
            loop=LoopConfig(epochs=correction_epochs, device="cpu"),
        )
        summary = run_correction_job(job, workspace=workspace)
        corrected = load_checkpoint(summary.outputs.checkpoint)
        cav = resolve_cav(summary.outputs.cav_file, model, dataset.dataset_id)
        true_before = evaluate(model, dataset, cav, attack=truth)
        true_after = evaluate(corrected, dataset, cav, attack=truth)
        row = {
            "cav_scope": scope,
            "transplanted": {"before": summary.before.attacked_acc, "after": summary.after.attacked_acc},
            "true": {"before": true_before.attacked_acc, "after": true_after.attacked_acc},
            "clean": {"before": summary.before.clean_acc, "after": summary.after.clean_acc},
            "after": _figures(true_after),
        }
        gap = true_before.clean_acc - true_before.attacked_acc
        row["gap_closed_true"] = (gap - (true_after.clean_acc - true_after.attacked_acc)) / gap if gap > 0 else None
        row["clean_change_points"] = (true_after.clean_acc - true_before.clean_acc) * 100
        row["transplant_error_points"] = {
            when: (row["transplanted"][when] - row["true"][when]) * 100 for when in ("before", "after")
        }
        runs[name] = row
        before = before or _figures(true_before) | {"transplanted_attacked_acc": summary.before.attacked_acc}
        print(
            f"{name:24s} true attacked {row['true']['before']:.3f} -> {row['true']['after']:.3f} "
            f"(transplant estimate {row['transplanted']['before']:.3f} -> {row['transplanted']['after']:.3f}), "
            f"clean {row['clean']['before']:.3f} -> {row['clean']['after']:.3f}, gap closed "
            f"{row['gap_closed_true']:.0%}"
        )
    return NaturalResult(n_train, opts.p, ATTACKED_CLASS, before, runs, time.perf_counter() - t0)
