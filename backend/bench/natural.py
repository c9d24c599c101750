"""`bench natural`: a correction measured on data whose artifact the library did not plant, as a user with an image
folder sees it.

Per artifact (`natural_artifacts`: a colour-calibration sticker near the image border, and surgical-marker ink along
the lesion's border, dark hairs across it and gel bubbles on it) the bench writes an image folder (`folder:` layout,
train/val/test) of SynthDerm lesions with the artifact in a share of the melanoma training and validation images, and
beside it the true attacked test folder: the same test images, each with the artifact. It trains a model on the folder
(it learns the shortcut), takes the artifact labels as a user's annotation file, and corrects with the defaults a user
gets (the CAV fitted from the labels, attacked figures from the transplant attack), fine-tuning as the control. It
reports the transplant's estimate of attacked accuracy, with its interval and its check, against the true attacked
folder's, before and after, and the share of the clean-vs-attacked gap each run closes on the true folder.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from backend.bench.natural_artifacts import natural_artifacts, parse_artifacts
from backend.bench.registry import BenchOptions, BenchResult, register_bench
from backend.concepts import resolve_cav
from backend.correction import LoopConfig
from backend.data import open_dataset
from backend.data.synthderm import SYNTHDERM_CLASSES, lesion_geometry, render_sample, sample_label
from backend.errors import ConfigError
from backend.evaluation import AttackConfig, accuracy, evaluate, predict_logits
from backend.models import load_checkpoint, save_checkpoint
from backend.options import option, switch
from backend.runs import ConceptSpec, CorrectionJob, run_correction_job
from backend.storage import resolve_workspace
from backend.training import TrainConfig, train_model

ATTACKED_CLASS = "melanoma"
_SEED = 7  # SynthDerm images other than the embedded benchmark's (seed 0)
_SPLITS = ("train", "val", "test")
DEFAULT_ARTIFACTS = "sticker,ring,hair,bubbles"
AUGMENTED_LOOP = {"trainable": "all", "lr": 3e-4}  # pasted copies teach every layer; a gentler step for all of them


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
    """correction on image folders with artifacts the library did not plant (a corner sticker, and ink, hair and gel
    bubbles on the lesion): transplant estimate with its interval and check vs the true attacked folder, RR-ClArC's
    defaults and fine-tuning as control"""

    artifacts: str = option(
        DEFAULT_ARTIFACTS,
        help=f"the artifacts, comma-separated, one folder and model each: {', '.join(natural_artifacts())}",
    )

    ranks: str = option("4", help="ranks of the concept subspace of the further RR-ClArC runs, comma-separated")
    augment: float = option(
        0.3, help="share of the clean training images given a pasted artifact in the augmented run (0: no such run)"
    )

    def __post_init__(self) -> None:
        parse_artifacts(self.artifacts)
        self.subspace_ranks()

    def subspace_ranks(self) -> tuple[int, ...]:
        """The ranks (> 1) of the further RR-ClArC runs, each beside the default (rank 1)."""
        try:
            ranks = tuple(int(r) for r in self.ranks.split(",") if r.strip())
        except ValueError:
            raise ConfigError(f"--ranks takes whole numbers, comma-separated; got {self.ranks!r}") from None
        if any(r < 2 for r in ranks):
            raise ConfigError("--ranks are the subspace runs' ranks, each at least 2 (rank 1 is the default run)")
        return ranks


_ABOUT = {
    "true_attacked": "accuracy on the true attacked test folder (every test image with the artifact), before/after",
    "transplant_estimate": "the transplant attack's estimate of that accuracy (artifacts cut from annotated training "
    "images, pasted into the test images), before/after",
    "transplant_interval": "its 95% bootstrap interval [low, high]",
    "interval_contains_truth": "whether that interval holds the true attacked accuracy",
    "estimate_check": "the transplant's own check: whether pasted artifacts move the model as natural ones do "
    "(reliable: true / false / null where it could not check) and why not",
    "gap_closed_true": "share of the clean-vs-attacked gap before that is gone after, on the true folder",
    "gap_closed_estimate": "the same share as the transplant estimate tells it",
    "gap_closed_reachable": "share of the shortcut's part of the gap that is gone: the gap before less what a model "
    "trained with the artifact in every class (reference) keeps, the artifact's own harm",
    "clean_change_points": "clean accuracy after minus before, points",
    "transplant_error_points": "estimate minus true attacked accuracy, points",
    "seconds": "wall time of the correction job (its own evaluations included)",
}


@dataclass(frozen=True)
class NaturalResult(BenchResult):
    images: int
    p: float
    attacked_class: str
    correction_epochs: int
    artifacts: dict[str, dict]  # artifact -> its folder, the figures before, and per run the figures before / after
    seconds: float
    about: dict[str, str] = field(default_factory=lambda: dict(_ABOUT))  # what the figures of a run mean

    def lines(self) -> list[str]:
        return [_artifact_line(name, row) for name, row in self.artifacts.items()]


def _artifact_line(name: str, row: dict) -> str:
    """One artifact's summary: the shortcut learnt, the estimate's interval and verdict, and each run's closure."""
    before = row["before"]
    check = before["estimate_check"]
    verdict = _verdict(check["reliable"])
    coverage = row.get("coverage")
    covered = (
        f", CAV coverage {coverage['coverage']:.0%} pooled / {coverage['position_coverage']:.0%} per position"
        if coverage
        else ""
    )
    runs = "; ".join(
        f"{run} closes {_share(r['gap_closed_true'])} of the true gap, {_share(r.get('gap_closed_reachable'))} of the "
        f"shortcut's (estimate {_share(r['gap_closed_estimate'])}) "
        f"at {r['clean_change_points']:+.1f} points clean, estimate after off by "
        f"{r['transplant_error_points']['after']:+.1f} points"
        f"{'' if r['interval_contains_truth']['after'] else ' (outside its interval)'} and "
        f"{_verdict(r['estimate_check']['after']['reliable'])}, {r['seconds']:.0f} s"
        for run, r in row["runs"].items()
    )
    return (
        f"{name}: clean {before['clean_acc']:.3f}, true attacked {before['true_attacked_acc']:.3f} (without the "
        f"shortcut {row['reference']['true_attacked_acc']:.3f}), estimate "
        f"{before['transplant_estimate']:.3f} {_interval(before['transplant_interval'])}"
        f"{'' if before['interval_contains_truth'] else ' (misses the truth)'}, {verdict}{covered}"
        f"{': ' + '; '.join(check['reasons']) if check['reasons'] else ''}. {runs}"
    )


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _interval(bounds: list[float] | None) -> str:
    return "[no interval]" if bounds is None else f"[{bounds[0]:.3f}, {bounds[1]:.3f}]"


def write_folders(
    root: Path, n_train: int, p: float, artifact: str = "sticker", size: int = 64, *, every_class: bool = False
) -> dict:
    """The clean folder (`root/images`, `artifact` in a share `p` of the melanoma train/val images, or of every
    class's with `every_class`: no shortcut to learn), the true attacked test folder (`root/attacked/test`: every test
    image with it) and the annotation file (`root/labels.csv`: the training images that show it). Written once per
    configuration (a marker file says which)."""
    drawing = natural_artifacts()[artifact]
    config = {"artifact": artifact, "n_train": n_train, "p": p, "size": size, "seed": _SEED, "version": 3}
    config |= {"every_class": True} if every_class else {}
    marker = root / "bench.json"
    if marker.is_file() and json.loads(marker.read_text()) == config:
        return config
    counts = {"train": n_train, "val": n_train // 5, "test": n_train * 3 // 10}
    marked = []
    for split in _SPLITS:
        for i in range(counts[split]):
            label = sample_label(_SEED, split, i)
            image = render_sample(_SEED, split, i, label, size)
            geometry = lesion_geometry(_SEED, split, i, label, size) if drawing.on_lesion else None
            rng = np.random.default_rng([_SEED, i, _SPLITS.index(split)])
            name = f"{split}/{SYNTHDERM_CLASSES[label]}/{split}_{i:05d}"
            clean = image
            planted = every_class or SYNTHDERM_CLASSES[label] == ATTACKED_CLASS
            if split != "test" and planted and rng.random() < p:
                clean = drawing.draw(image, geometry, rng)[0]
                if split == "train":
                    marked.append(name)
            save_png(root / "images" / f"{name}.png", clean)
            if split == "test":
                save_png(root / "attacked" / f"{name}.png", drawing.draw(image, geometry, rng)[0])
    write_artifact_labels(root / "labels.csv", marked)
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


def _closed(clean: dict, attacked: dict) -> float | None:
    """The share of the clean-vs-attacked gap before that is gone after (None without a gap)."""
    gap = clean["before"] - attacked["before"]
    return (gap - (clean["after"] - attacked["after"])) / gap if gap > 0 else None


def _reasons(evaluation) -> list[str]:
    return (evaluation.estimate_check or {}).get("reasons", [])


def _contains(bounds: list[float] | None, value: float) -> bool | None:
    return None if bounds is None else bounds[0] <= value <= bounds[1]


def _run_row(summary, true_before, true_after, method: str, scope: str, seconds: float) -> dict:
    """One run's figures: the true attacked folder's and the transplant estimate's (with its interval and check)
    before and after, clean accuracy, the gaps closed, the estimate's error and the run's seconds."""
    when = {"before": summary.before, "after": summary.after}
    true = {"before": true_before.attacked_acc, "after": true_after.attacked_acc}
    clean = {"before": true_before.clean_acc, "after": true_after.clean_acc}
    estimate = {k: e.attacked_acc for k, e in when.items()}
    intervals = {k: e.attacked_acc_interval for k, e in when.items()}
    return {
        "method": method,
        "cav_scope": scope,
        "true_attacked": true,
        "transplant_estimate": estimate,
        "transplant_interval": intervals,
        "interval_contains_truth": {k: _contains(intervals[k], true[k]) for k in when},
        "estimate_check": {k: {"reliable": e.reliable, "reasons": _reasons(e)} for k, e in when.items()},
        # honest: the interval holds the truth, or the estimate is not called reliable
        "honest": {k: bool(_contains(intervals[k], true[k])) or when[k].reliable is not True for k in when},
        "clean": clean,
        "after_true_folder": _figures(true_after),
        "gap_closed_true": _closed(clean, true),
        "gap_closed_estimate": _closed({k: e.clean_acc for k, e in when.items()}, estimate),
        "clean_change_points": (clean["after"] - clean["before"]) * 100,
        "transplant_error_points": {k: (estimate[k] - true[k]) * 100 for k in when},
        "seconds": seconds,
    }


def _before_row(run: dict, true_before, check: dict | None) -> dict:
    """The biased model's figures: the true attacked folder's, and the transplant's estimate with its interval and
    its check in full (as the first run measured them)."""
    return {
        "clean_acc": true_before.clean_acc,
        "true_attacked_acc": true_before.attacked_acc,
        "tcav_sensitivity": true_before.tcav_sensitivity,
        "r_bias": true_before.r_bias,
        "transplant_estimate": run["transplant_estimate"]["before"],
        "transplant_interval": run["transplant_interval"]["before"],
        "interval_contains_truth": run["interval_contains_truth"]["before"],
        "transplant_error_points": run["transplant_error_points"]["before"],
        "estimate_check": check or {"reliable": None, "reasons": ["no check was made"]},
    }


def _runs(ranks: tuple[int, ...], augment: float) -> list[tuple[str, str, int, dict]]:
    """(name, method, rank, loop options) of an artifact's runs: RR-ClArC with its defaults, with each subspace rank,
    with pasted copies (every layer trained: `AUGMENTED_LOOP`), and fine-tuning."""
    subspaces = [(f"rrclarc_rank{r}", "rrclarc", r, {}) for r in ranks]
    augmented = [("rrclarc_augmented", "rrclarc", 1, AUGMENTED_LOOP | {"augment": augment})] if augment else []
    return [("rrclarc", "rrclarc", 1, {}), *subspaces, *augmented, ("finetune", "finetune", 1, {})]


def _run_line(name: str, row: dict) -> str:
    """A run's figures as printed while the bench measures."""
    true, estimate, interval = row["true_attacked"], row["transplant_estimate"], row["transplant_interval"]
    return (
        f"  {name:9s} true attacked {true['before']:.3f} -> {true['after']:.3f} (estimate {estimate['before']:.3f} "
        f"{_interval(interval['before'])} -> {estimate['after']:.3f} {_interval(interval['after'])}), clean "
        f"{row['clean']['before']:.3f} -> {row['clean']['after']:.3f}, gap closed {_share(row['gap_closed_true'])} "
        f"(estimate {_share(row['gap_closed_estimate'])}), {row['seconds']:.0f} s; estimate after "
        f"{_verdict(row['estimate_check']['after']['reliable'])}, honest before/after "
        f"{'/'.join('yes' if row['honest'][k] else 'NO' for k in ('before', 'after'))}"
    )


def _verdict(reliable: bool | None) -> str:
    return {True: "reliable", False: "unreliable", None: "unchecked"}[reliable]


def _bench_artifact(opts: NaturalBench, artifact: str, root: Path, workspace: Path, n_train: int, epochs: int) -> dict:
    """One artifact's folder, model and runs (RR-ClArC with its defaults, fine-tuning as control), measured."""
    t0 = time.perf_counter()
    drawing = natural_artifacts()[artifact]
    write_folders(root, n_train, opts.p, artifact)
    spec, checkpoint, model, dataset = folder_model(root, n_train, epochs, workspace)
    truth = AttackConfig(attack="supplied", attacked_dataset=f"folder:{root / 'attacked'}")
    labels = str(root / "labels.csv")
    print(
        f"{artifact}: {drawing.description}, in {opts.p:.0%} of the melanomas; folder {root}, model {checkpoint.name}"
    )
    runs, checks, true_before, coverage = {}, {}, None, None
    scope = "attacked_class"
    for name, method, rank, loop in _runs(opts.subspace_ranks(), opts.augment):
        job = CorrectionJob(
            out=str(root / "runs" / name),
            checkpoint=str(checkpoint),
            dataset=spec,
            method=method,
            concepts=(ConceptSpec(labels=labels, rank=rank),),
            cav_scope=scope,
            loop=LoopConfig(epochs=opts.correction_budget(), device="cpu", **loop),
        )
        started = time.perf_counter()
        summary = run_correction_job(job, workspace=workspace)
        seconds = time.perf_counter() - started
        corrected = load_checkpoint(summary.outputs.checkpoint)
        cav = resolve_cav(summary.outputs.cav_file, model, dataset.dataset_id)
        true_before = true_before or evaluate(model, dataset, cav, attack=truth)
        true_after = evaluate(corrected, dataset, cav, attack=truth)
        runs[name] = _run_row(summary, true_before, true_after, method, scope, seconds) | {
            "rank": rank,
            "subspace_coverage": summary.cav.subspace_coverage,
        }
        checks[name] = summary.before.estimate_check
        coverage = coverage or summary.cav.coverage_detail
        print(_run_line(name, runs[name]))
    reference = unbiased_reference(root, opts.p, artifact, n_train, epochs, workspace)
    for row in runs.values():
        row["gap_closed_reachable"] = _closed_reachable(row, reference)
    print(_reference_line(reference, runs))
    return {
        "description": drawing.description,
        "on_lesion": drawing.on_lesion,
        "folder": str(root),
        "model": checkpoint.name,
        "before": _before_row(runs["rrclarc"], true_before, checks["rrclarc"]),
        "coverage": coverage,  # of the default CAV, on transplanted training pairs
        "reference": reference,
        "runs": runs,
        "seconds": time.perf_counter() - t0,
    }


def unbiased_reference(root: Path, p: float, artifact: str, n_train: int, epochs: int, workspace: Path) -> dict:
    """What a model without the shortcut gets: the same architecture trained on the same images with the artifact in
    the same share of every class's (written and trained once, beside `root`), on the clean and the true attacked
    test images. What is left of its gap is the artifact's own harm, which no correction of the shortcut removes."""
    reference_root = root.parent / f"{artifact}-decorrelated"
    write_folders(reference_root, n_train, p, artifact, every_class=True)
    spec, _, model, _ = folder_model(reference_root, n_train, epochs, workspace)
    clean, attacked = (_accuracy(model, s, workspace) for s in (spec, f"folder:{root / 'attacked'}?size=64"))
    return {"folder": str(reference_root), "clean_acc": clean, "true_attacked_acc": attacked}


def _accuracy(model, spec: str, workspace: Path) -> float:
    view = open_dataset(spec, workspace).split("test").with_normalization(model.meta.normalization)
    return accuracy(predict_logits(model.module, view), view.labels)


def _closed_reachable(row: dict, reference: dict) -> float | None:
    """The share of the gap the shortcut causes (the gap before, less the unbiased reference's own) that is gone."""
    clean, true = row["clean"], row["true_attacked"]
    gap = clean["before"] - true["before"]
    shortcut = gap - (reference["clean_acc"] - reference["true_attacked_acc"])
    return (gap - (clean["after"] - true["after"])) / shortcut if shortcut > 0 else None


def _reference_line(reference: dict, runs: dict) -> str:
    closed = ", ".join(f"{name} {_share(row['gap_closed_reachable'])}" for name, row in runs.items())
    return (
        f"  without the shortcut (artifact in every class): clean {reference['clean_acc']:.3f}, true attacked "
        f"{reference['true_attacked_acc']:.3f}; share of the shortcut's gap closed: {closed}"
    )


@register_bench("natural", NaturalBench)
def bench_natural(opts: NaturalBench) -> NaturalResult:
    workspace, root, n_train, epochs = opts.folder("natural")
    t0 = time.perf_counter()
    print(f"bench natural under {root}: {n_train} training images, {epochs} epochs, each artifact its own folder")
    artifacts = {
        artifact: _bench_artifact(opts, artifact, root / artifact, workspace, n_train, epochs)
        for artifact in parse_artifacts(opts.artifacts)
    }
    return NaturalResult(n_train, opts.p, ATTACKED_CLASS, opts.correction_budget(), artifacts, time.perf_counter() - t0)
