"""`bench discovery`: does Reveal find a shortcut nobody annotated? Three models: one trained on an image folder with
two or three planted artifacts, each in a share of one class (bench multi's folder), the shipped default model
(skin markers in melanomas), and one trained on the embedded benchmark without any artifact. For each planted
artifact, the best (by F1) of its class's top-5 candidates, scored against the planted samples; for the clean model,
what it proposes anyway."""

from __future__ import annotations

import time
from dataclasses import dataclass

from backend.bench.multi import parse_plantings, write_folders
from backend.bench.natural import FolderBench, folder_model, trained_once
from backend.bench.registry import BenchResult, register_bench
from backend.concepts import read_concept_labels
from backend.data import open_dataset
from backend.defaults import DEFAULT_CHECKPOINT
from backend.discovery import ClassDiscovery, discover_class
from backend.models import load_checkpoint
from backend.options import option, switch

_TOP = 5
# Three shortcuts the model learns. Not bench multi's band-aid: measured, this model does not learn it (band-aids in
# nevi cost 2.4 points of attacked accuracy, in keratoses none), so there is nothing in its explanations to find.
DEFAULT_PLANTINGS = "skin_marker:melanoma,dark_corner:nevus,ruler:seborrheic_keratosis"


@dataclass(frozen=True, kw_only=True)
class DiscoveryBench(FolderBench):
    """Reveal's candidates against planted artifacts: three artifacts in three classes, the default model, and a model
    trained without any artifact"""

    artifacts: str = option(DEFAULT_PLANTINGS, help=f"ARTIFACT:CLASS pairs (default {DEFAULT_PLANTINGS})")
    epochs: int = option(12, help="training epochs of the planted and clean models")
    quick: bool = switch(help="600 training images, 6 epochs, no clean model: a smoke test")


@dataclass(frozen=True)
class DiscoveryResult(BenchResult):
    artifacts: dict[str, dict]  # artifact -> the best of its class's top candidates (score) and the class
    default_model: dict
    default_model_top_scores: list[float]
    clean_model: dict[str, list[dict]]  # class -> its top candidates
    plantings: dict[str, str]
    images: int
    p: float
    seconds: float

    def lines(self) -> list[str]:
        met = [a for a, row in self.artifacts.items() if row["precision"] >= 0.9 and row["recall"] >= 0.5]
        return [
            f"{len(met)} of {len(self.artifacts)} planted artifacts found in their class's top {_TOP} (>= 0.9 / >= 0.5)"
        ]


def score(found: ClassDiscovery, planted: set[str]) -> dict:
    """The best of the top-5 candidates by F1 against the planted samples: its precision, recall and rank."""
    best = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "rank": None, "candidate": None, "size": 0}
    for c in found.candidates[:_TOP]:
        hits = len(planted.intersection(c.sample_ids))
        precision, recall = hits / len(c.sample_ids), hits / len(planted) if planted else 0.0
        f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
        if f1 > best["f1"]:
            best = {
                "precision": precision,
                "recall": recall,
                "f1": f1,
                "rank": c.rank,
                "candidate": c.key,
                "size": len(c.sample_ids),
            }
    return best


def _proposals(found: ClassDiscovery) -> list[dict]:
    return [
        {"candidate": c.key, "size": len(c.sample_ids), "share": c.share, "score": c.score}
        for c in found.candidates[:_TOP]
    ]


def _report(name: str, row: dict) -> str:
    ok = row["precision"] >= 0.9 and row["recall"] >= 0.5
    where = f"rank {row['rank']} ({row['candidate']}, {row['size']} images)" if row["rank"] else "none of the top 5"
    return (
        f"  {name:26s} precision {row['precision']:.2f} recall {row['recall']:.2f}  {where}"
        f"  {'meets' if ok else 'MISSES'} >= 0.9 / >= 0.5"
    )


@register_bench("discovery", DiscoveryBench)
def bench_discovery(opts: DiscoveryBench) -> DiscoveryResult:
    workspace, root, n_train, epochs = opts.folder("discovery")
    plantings = parse_plantings(opts.artifacts)
    t0 = time.perf_counter()
    write_folders(root, plantings, n_train, opts.p)
    _, _, model, dataset = folder_model(root, n_train, epochs, workspace)
    print(f"planted folder {root}: {plantings} at p={opts.p}, {n_train} training images")
    artifacts = {}
    for artifact, class_name in plantings.items():
        labels = read_concept_labels(root / f"labels-{artifact}.csv")
        found = discover_class(model, dataset, class_name, workspace=workspace)
        artifacts[artifact] = score(found, {sid for sid, v in labels.items() if v == 1}) | {"class": class_name}
        print(_report(f"{artifact} in {class_name}", artifacts[artifact]))

    default = load_checkpoint(DEFAULT_CHECKPOINT)
    embedded = open_dataset(default.meta.dataset, workspace)
    view = embedded.split("train")
    planted_ids = {sid for sid, flag in zip(view.sample_ids, view.has_artifact) if flag}
    target = embedded.planting.classes[0]
    found = discover_class(default, embedded, target, workspace=workspace)
    default_row = score(found, planted_ids) | {"class": target, "artifact": embedded.planting.artifact}
    print("default model (skin markers in melanomas):")
    print(_report(f"{default_row['artifact']} in {target}", default_row))

    clean = {}
    if not opts.quick:
        clean_spec = "synthderm?artifact=none&seed=0&size=64"
        clean_model = trained_once(root / f"clean-{epochs}.safetensors", clean_spec, epochs, workspace)
        clean_data = open_dataset(clean_spec, workspace)
        print("model trained without any artifact, its top candidates per class:")
        for class_name in clean_data.classes:
            clean[class_name] = _proposals(discover_class(clean_model, clean_data, class_name, workspace=workspace))
            top = clean[class_name][0] if clean[class_name] else None
            print(
                f"  {class_name:22s} "
                + (f"{top['candidate']}: {top['size']} images, d' {top['score']:.2f}" if top else "no candidate")
            )
    biased_scores = [c["score"] for c in _proposals(found)]
    seconds = time.perf_counter() - t0
    return DiscoveryResult(artifacts, default_row, biased_scores, clean, plantings, n_train, opts.p, seconds)
