"""The audit report of a succeeded correction run: one self-contained HTML file (inline CSS, images as data: URIs,
charts as inline SVG; no script, no external resource) that opens offline and prints cleanly to PDF, for filing
with the corrected model or handing to a colleague.

    from backend.runs.reporting.report import build_report, write_report
    html = build_report(store, run_id)                 # the page as text (e.g. for a download button)
    path = write_report(store, run_id, "report.html")  # the same, written to a file

`store` is the workspace's `RunStore`. An unknown run id, a run that did not succeed, or a missing output file
(checkpoint, model card, CAV file) raises a `ConfigError` naming it; a missing optional part (example images, the
checkpoint the run started from, the dataset, a sweep) leaves its section with a sentence saying why it is not there.
Building takes a few seconds: both models explain the run's example images with LRP, on the CPU.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from backend import __version__
from backend.attribution import class_heatmaps, overlay
from backend.concepts import Cav, CavSummary, load_cav, planted_labels, read_concept_labels
from backend.data import ClarcDataset, image_batch, open_dataset
from backend.errors import ClarcError, ConfigError
from backend.evaluation import FIGURES, HEADLINE, coverage_is_low, describe_attack, estimate_notice
from backend.models import LoadedModel, load_checkpoint
from backend.runs.execution.store import RunRecord, RunStore
from backend.runs.jobs.correction import CorrectionJob, method_config_from
from backend.runs.jobs.export import load_examples
from backend.runs.jobs.result import ConceptOutcome, RunResult
from backend.runs.jobs.sweep import sweep_summary
from backend.runs.reporting.charts import Point, line_chart, scatter_chart
from backend.runs.reporting.compare import concept_rows
from backend.runs.reporting.html import (
    alert,
    change,
    confusion_table,
    esc,
    flatten,
    kv,
    note,
    num,
    page,
    pct,
    section,
    table,
    tile,
    when,
)
from backend.storage import atomic_write_bytes

__all__ = ["build_report", "write_report"]

logger = logging.getLogger(__name__)

_REQUIRED_OUTPUTS = {"checkpoint": "corrected checkpoint", "card": "model card", "cav_file": "CAV file"}
_N_ANNOTATION_EXAMPLES = 6  # training images shown per concept label
_HISTORY = {"loss": "loss (cross-entropy + penalty)", "ce": "cross-entropy", "penalty": "penalty"}  # metric -> name
_CAV_QUALITY = {
    "train_auc": "AUC on its training samples",
    "held_out_auc": "AUC on held-out samples (validation split)",
    "alignment": "alignment with the planted artifact's true effect (cosine)",
}


# -- what the report reads -------------------------------------------------------------------------------------------


def _finished_run(store: RunStore, run_id: str) -> RunRecord:
    """The run, if it succeeded and its output files are all there."""
    record = store.get(run_id)
    if record.status != "succeeded":
        reason = f" ({record.error})" if record.error else ""
        raise ConfigError(f"run {run_id!r} is {record.status}{reason}: only a succeeded run has an audit report")
    if not record.result:
        raise ConfigError(f"run {run_id!r} stored no results")
    for key, what in _REQUIRED_OUTPUTS.items():
        path = record.outputs.get(key)
        if not path or not Path(path).is_file():
            raise ConfigError(f"the {what} of run {run_id!r} is missing ({path or 'not recorded'}): moved or deleted?")
    return record


def _card(record: RunRecord) -> dict:
    """The correction part of the corrected model's card."""
    path = record.outputs["card"]
    try:
        return json.loads(Path(path).read_text()).get("training", {}).get("correction", {})
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"the model card of run {record.id!r} ({path}) cannot be read: {exc}") from exc


def _base_model(record: RunRecord) -> tuple[LoadedModel | None, str]:
    """The model before the correction, or None with the reason it cannot be loaded."""
    try:
        return load_checkpoint(record.config["checkpoint"]), ""
    except (ClarcError, OSError) as exc:
        return None, f"the checkpoint the run started from cannot be loaded ({esc(exc)})"


def _dataset(record: RunRecord, model: LoadedModel, workspace: Path) -> tuple[ClarcDataset | None, str]:
    """The run's dataset, or None with the reason it cannot be opened."""
    try:
        return open_dataset(record.config.get("dataset") or model.meta.dataset, workspace), ""
    except (ClarcError, OSError) as exc:
        return None, f"the dataset cannot be opened ({esc(exc)})"


# -- the sections ----------------------------------------------------------------------------------------------------


def _header(record: RunRecord) -> str:
    """Title, what was done in one sentence, and the headline figures before → after."""
    result = record.correction
    before, after, cav = result.before, result.after, result.cav
    cards = [
        f'<div class="card"><div class="label">{esc(figure.label)}</div><div class="value">'
        f"{figure.text(getattr(before, key))} → {figure.text(getattr(after, key))}</div>"
        f"<div>{change(figure, getattr(before, key), getattr(after, key))}</div></div>"
        for key, figure in ((k, FIGURES[k]) for k in HEADLINE)
        if getattr(after, key) is not None
    ]
    summary = (
        f"<b>{esc(record.config['method'])}</b> along a {esc(cav.kind)} CAV of the concept "
        f"<b>{esc(cav.concept)}</b> in layer <code>{esc(cav.layer)}</code>, attacked class "
        f"<b>{esc(after.attacked_class or cav.attacked_class)}</b>."
    )
    return (
        f"<header><h1>Audit report: {esc(record.name)}</h1>"
        f'<p class="sub">Correction run <code>{esc(record.id)}</code> · {esc(record.status)} · finished '
        f"{when(record.finished)} · report made {when(time.time())} by ClArC Studio {esc(__version__)}</p>"
        f'<p>{summary}</p><div class="cards">{"".join(cards)}</div>{_estimate_warning(result.concepts[0])}</header>'
    )


def _estimate_warning(outcome: ConceptOutcome) -> str:
    """A boxed warning where the headline's attacked figures are an unreliable or unchecked estimate."""
    notice = estimate_notice(outcome.after)
    if not notice or outcome.reliable is True:
        return ""
    return alert(f"<b>The attacked figures are not to be trusted.</b> {esc(notice)}")


def _model_and_data(record: RunRecord, corrected: LoadedModel, base: LoadedModel | None, dataset, why: str) -> str:
    meta, config = corrected.meta, record.config
    duration = record.finished - record.started if record.started and record.finished else None
    pairs = [
        ("checkpoint before", f"<code>{esc(config['checkpoint'])}</code>"),
        ("its SHA-256", f"<code>{esc(base.sha256)}</code>" if base else "–"),
        ("corrected checkpoint", f"<code>{esc(record.outputs['checkpoint'])}</code>"),
        ("its SHA-256", f"<code>{esc(corrected.sha256)}</code>"),
        ("model card", f"<code>{esc(record.outputs['card'])}</code>"),
        ("architecture", f"{esc(meta.arch)}, {meta.input_size}×{meta.input_size} px input"),
        ("classes", esc(", ".join(meta.classes))),
        ("dataset", f"<code>{esc(config.get('dataset') or meta.dataset)}</code>"),
        ("dataset id", esc(dataset.dataset_id) if dataset else "–"),
        ("device, engine", f"{esc(record.device)}, {esc(record.engine)}"),
        ("queued", when(record.created)),
        ("started", when(record.started)),
        ("finished", when(record.finished) + (f" ({duration:.0f} s)" if duration is not None else "")),
    ]
    parts = [kv(pairs)]
    if dataset is None:
        parts.append(note(f"Class counts are not shown: {why}."))
    else:
        counts = dataset.describe()["counts"]
        splits = list(counts)
        rows = [[esc(c)] + [str(counts[s].get(c, 0)) for s in splits] for c in dataset.classes]
        parts += ["<h3>Images per class and split</h3>", table(["class", *splits], rows, range(1, len(splits) + 1))]
    return section("model", "Model and data", *parts)


def _labels(record: RunRecord, dataset: ClarcDataset) -> tuple[str, dict[str, int] | None]:
    """Where the concept labels come from, in words, and the labels when they can be read."""
    first = CorrectionJob.from_dict(record.config).concepts[0]
    if first.labels:
        where = f"the annotations <code>{esc(first.labels)}</code>"
        try:
            return where, read_concept_labels(first.labels)
        except ClarcError as exc:
            return f"{where}, which cannot be read now ({esc(exc)})", None
    if first.cav:
        return f"the saved CAV <code>{esc(first.cav)}</code> (the samples it was fitted on)", None
    if dataset.planting is not None:
        return f"the planted artifact <b>{esc(dataset.planting.artifact)}</b>", planted_labels(dataset)
    return "the samples the CAV was fitted on", None


def _annotations(record: RunRecord, cav: Cav, card: dict, dataset: ClarcDataset | None, why: str) -> str:
    scope = "the attacked class" if cav.scope == "attacked_class" else "all classes"
    parts = [
        note(
            f"The CAV was fitted on {cav.n_concept + cav.n_other} training images of {scope}: {cav.n_concept} showing "
            f"the concept, {cav.n_other} not (labelled clean, or unlabelled). Annotation hash (SHA-256 of the ids "
            f"marked as showing the artifact): <code>{esc(card.get('annotations_sha256') or '–')}</code>."
        )
    ]
    if dataset is None:
        parts.append(note(f"Counts per split and example images are not shown: {why}."))
        return section("annotations", "Concept annotations", *parts)
    source, labels = _labels(record, dataset)
    parts.insert(0, note(f"Labels from {source}."))
    if labels is not None:
        splits = ("train", "val", "test")
        where = {sid: s for s in splits for sid in dataset.split(s).sample_ids}
        rows = []
        for label, name in ((1, "shows the concept (1)"), (0, "clean (0)")):
            ids = [sid for sid, flag in labels.items() if flag == label]
            rows.append([name, *(str(sum(where.get(sid) == s for sid in ids)) for s in splits), str(len(ids))])
        parts.append(table(["label", *splits, "total"], rows, (1, 2, 3, 4)))
    view = dataset.split("train")
    index = {sid: i for i, sid in enumerate(view.sample_ids)}
    concept = set(cav.concept_ids)
    for title, ids in (
        ("Training images showing the concept", [s for s in cav.concept_ids if s in index]),
        (
            "Training images of the same scope without it",
            [s for s in cav.sample_ids if s in index and s not in concept],
        ),
    ):
        tiles = [
            tile(view.image(index[sid]), f"{sid} · {view.classes[view.labels[index[sid]]]}")
            for sid in ids[:_N_ANNOTATION_EXAMPLES]
        ]
        body = f'<div class="examples">{"".join(tiles)}</div>' if tiles else note("None.")
        parts += [f"<h3>{esc(title)} ({len(ids)}, first {min(len(ids), _N_ANNOTATION_EXAMPLES)} shown)</h3>", body]
    return section("annotations", "Concept annotations", *parts)


def _cav_section(summary: CavSummary, cav: Cav) -> str:
    pairs = [
        ("name", esc(summary.name or "–")),
        ("source", esc(summary.source or "–")),
        ("kind", f"<b>{esc(cav.kind)}</b>"),
        ("layer", f"<code>{esc(cav.layer)}</code>"),
        ("pooling", esc(cav.pooling)),
        ("scope", esc(cav.scope)),
        ("attacked class", esc(cav.attacked_class or "–")),
        ("concept", esc(cav.concept)),
        ("samples with / without the concept", f"{cav.n_concept} / {cav.n_other}"),
        ("channels", str(len(cav.vector))),
        ("fit parameters", f"<code>{esc(json.dumps(cav.params))}</code>" if cav.params else "defaults"),
        ("fit time", f"{cav.fit_seconds:.3f} s" if cav.fit_seconds >= 1 else f"{cav.fit_seconds * 1000:.1f} ms"),
    ]
    quality = {key: getattr(summary, key) for key in _CAV_QUALITY}
    pairs += [(label, num(quality[key])) for key, label in _CAV_QUALITY.items() if quality[key] is not None]
    significance = summary.significance
    if significance:
        test = f"score {num(significance.get('score'))}, p = {num(significance.get('p_value'))}"
        pairs.append(("permutation test against random CAVs", test))
    if significance is None and all(value is None for value in quality.values()):
        pairs.append(("quality", "not stored with this run (a saved CAV keeps its figures in the CAV library)"))
    pairs += _coverage_pairs(summary)
    return section("cav", "The CAV", kv(pairs))


def _coverage_pairs(summary: CavSummary) -> list[tuple[str, str]]:
    """The CAV's coverage of the artifact's effect on the activations (pooled and at every position), and of the
    concept subspace where the run penalised several directions."""
    detail = summary.coverage_detail
    if not detail:
        return []
    pairs = [
        (
            "coverage of the artifact's activation change",
            f"{pct(detail['coverage'])} pooled, {pct(detail['position_coverage'])} at every position "
            f"({detail['n_pairs']} {esc(detail['source'])} pairs of the {esc(detail['split'])} split)",
        )
    ]
    if detail.get("subspace_coverage") is not None:
        pairs.append(
            (
                f"coverage of the {detail['rank']}-direction subspace",
                f"{pct(detail['subspace_coverage'])} pooled, {pct(detail['subspace_position_coverage'])} at every "
                "position (held-out pairs)",
            )
        )
    if coverage_is_low(detail):
        pairs.append(
            (
                "warning",
                "<b>Less than half of the artifact's effect lies along the CAV</b>: a correction along it leaves the "
                "rest of the shortcut in other directions; compare a concept subspace (rank) or another layer.",
            )
        )
    return pairs


def _config_section(config: dict) -> str:
    method = config["method"]
    effective = asdict(method_config_from(method, config.get("method_options") or {}))
    return section(
        "config",
        "Correction configuration",
        "<h3>The job as stored</h3>",
        kv(flatten(config), long=True),
        f"<h3>{esc(method)} options as run (defaults filled in)</h3>",
        kv(flatten(effective)) if effective else note(f"{esc(method)} takes no options."),
    )


def _figures_section(outcome: ConceptOutcome) -> str:
    before, after = outcome.before, outcome.after
    pairs = [(f, getattr(before, k), getattr(after, k)) for k, f in FIGURES.items()]
    rows = [
        [esc(f.label), f.text(b), f.text(a), change(f, b, a)] for f, b, a in pairs if b is not None or a is not None
    ]
    attacked = FIGURES["attacked_acc"]
    intervals = (
        f" 95% intervals of the attacked accuracy: {attacked.interval_text(before.attacked_acc_interval)} before, "
        f"{attacked.interval_text(after.attacked_acc_interval)} after (test images and donors resampled); gap "
        f"closed {esc(outcome.gap_closed_text())} ({esc(outcome.estimate_label)})."
        if after.attacked_acc is not None
        else ""
    )
    notice = estimate_notice(after)
    parts = [
        note(
            f"Measured on the {esc(after.split)} split ({esc(after.n)} images). "
            f"Attacked images: {esc(describe_attack(after))}.{intervals}"
        ),
        (alert if outcome.reliable is not True else note)(esc(notice)) if notice else "",
        table(["figure", "before", "after", "change"], rows, (1, 2, 3)),
    ]
    classes = after.classes or list(after.clean_acc_per_class)
    columns = [
        (f"{figure} {moment}", getattr(figures, key))
        for figure, key in (("clean", "clean_acc_per_class"), ("attacked", "attacked_acc_per_class"))
        for moment, figures in (("before", before), ("after", after))
        if getattr(figures, key)
    ]
    rows = [[esc(c)] + [pct(values.get(c)) for _, values in columns] for c in classes]
    parts += [
        "<h3>Accuracy per class</h3>",
        table(["class", *(n for n, _ in columns)], rows, range(1, len(columns) + 1)),
    ]
    for name, key in (("Clean", "confusion"), ("Attacked", "attacked_confusion")):
        if getattr(before, key) and getattr(after, key):
            tables = "".join(
                f"<figure>{confusion_table(getattr(figures, key), classes)}<figcaption>{moment}</figcaption></figure>"
                for moment, figures in (("before", before), ("after", after))
            )
            parts += [
                f"<h3>{name} confusion (rows: true class, columns: predicted)</h3>",
                f'<div class="row">{tables}</div>',
            ]
    return section("figures", "Before and after the correction", *parts)


def _concepts_section(result: RunResult) -> str:
    """A row per concept when the run corrected several at once (none otherwise)."""
    rows = concept_rows(result)
    if len(rows) < 2:
        return ""
    body = [
        [
            esc(row["concept"]),
            esc(row["attacked class"] or "-"),
            esc(row["attacked images"] or "-"),
            *(
                value
                for key in ("attacked_acc", "tcav_sensitivity", "r_bias")
                for value in (FIGURES[key].text(row[f"{key} before"]), FIGURES[key].text(row[f"{key} after"]))
            ),
            pct(row["gap closed"]),
        ]
        for row in rows
    ]
    header = [
        "concept",
        "class",
        "attacked images",
        "attacked before",
        "attacked after",
        "TCAV sens. before",
        "TCAV sens. after",
        "R_bias before",
        "R_bias after",
        "gap closed",
    ]
    return section(
        "concepts",
        "Each concept",
        note(
            "This run corrected several concepts at once. The figures above are the first concept's; here each "
            "concept's own, measured on its own attacked images. Gap closed: the share of the clean-vs-attacked "
            "accuracy gap the correction removed."
        ),
        table(header, body, range(3, len(header))),
    )


def _explain(model: LoadedModel, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LRP heatmaps (N, H, W) of uint8 images (N, H, W, 3) for the predicted class, the predictions (N,) and their
    probabilities (N,)."""
    maps = class_heatmaps(model, image_batch(images, model.meta.normalization))
    probabilities = torch.softmax(maps.logits.detach().float(), dim=1)
    predicted = maps.targets.numpy()
    return maps.maps, predicted, probabilities[torch.arange(len(predicted)), maps.targets].numpy()


def _heatmaps(record: RunRecord, base: LoadedModel | None, corrected: LoadedModel, why: str) -> str:
    title = "Heatmaps before and after"
    path = record.outputs.get("examples")
    if not path or not Path(path).is_file():
        return section("heatmaps", title, note("This run kept no example images (it predates them, or they moved)."))
    if base is None:
        return section("heatmaps", title, note(f"No heatmaps: {why}."))
    examples = load_examples(path)
    images = examples["images"]
    if not len(images):
        return section("heatmaps", title, note("The run had no attacked or annotated test images to show."))
    explained = {moment: _explain(model, images) for moment, model in (("before", base), ("after", corrected))}
    classes = corrected.meta.classes
    cards = []
    for k, picture in enumerate(images):
        tiles = [tile(picture, "image")]
        for moment, (maps, predicted, confidence) in explained.items():
            tiles.append(tile(overlay(picture, maps[k]), f"{moment} → {classes[predicted[k]]} ({confidence[k]:.0%})"))
        label = (
            f"{examples['sample_ids'][k]} · true class {classes[int(examples['labels'][k])]} · {examples['kinds'][k]}"
        )
        images_html = f'<div class="images">{"".join(tiles)}</div>'
        cards.append(f'<div class="example">{images_html}<figcaption>{esc(label)}</figcaption></div>')
    legend = note(
        "Test images with the artifact (attacked as the evaluation measured them, or annotated as showing it), "
        "explained by LRP for the predicted class by the model before and after the correction (prediction and its "
        "probability under each): red is evidence for the prediction, blue against it, each heatmap on its own scale."
    )
    return section("heatmaps", title, legend, f'<div class="examples">{"".join(cards)}</div>')


def _training(history: Sequence[dict], seconds: float | None) -> str:
    title = "Training"
    if not history:
        return section("training", title, note("This method does not train: there is no loss curve."))
    epochs = [float(h.get("epoch", i + 1)) for i, h in enumerate(history)]
    keys = [k for k, v in history[0].items() if k not in ("epoch", "seconds") and isinstance(v, (int, float))]
    charts = []
    for key in keys:
        points = [(x, float(h[key])) for x, h in zip(epochs, history) if np.isfinite(h.get(key, np.nan))]
        if points:
            name = _HISTORY.get(key, key)
            chart = line_chart([x for x, _ in points], [y for _, y in points], "epoch", name, f"{name} per epoch")
            charts.append(f'<figure class="chart">{chart}<figcaption>{esc(name)} per epoch</figcaption></figure>')
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    text = f"{len(history)} epochs{took}; each point is the mean over the epoch's batches."
    return section("training", title, note(text), f'<div class="row">{"".join(charts)}</div>')


def _sweep(store: RunStore, record: RunRecord) -> str:
    title = "The sweep's trade-off"
    if not record.sweep_id:
        return section("sweep", title, note("This run is not part of a sweep."))
    rows = sweep_summary(store, record.sweep_id)
    parts = [
        note(
            f"Sweep <code>{esc(record.sweep_id)}</code>, {len(rows)} runs. Filled: the Pareto-best among those that "
            "succeeded; ringed: this run."
        )
    ]
    plotted = [r for r in rows if r["clean_acc"] is not None and r["attacked_acc"] is not None]
    if plotted:
        points = [
            Point(r["clean_acc"], r["attacked_acc"], _sweep_label(r), r["pareto"], r["run_id"] == record.id)
            for r in plotted
        ]
        before = record.correction.before
        if before.attacked_acc is not None:
            points.append(Point(before.clean_acc, before.attacked_acc, "before correction"))
        chart = scatter_chart(points, "clean accuracy", "attacked accuracy", "clean against attacked accuracy")
        caption = "clean against attacked accuracy of each run after its correction"
        parts.append(f'<figure class="chart">{chart}<figcaption>{caption}</figcaption></figure>')
    else:
        parts.append(note("No run of the sweep has both clean and attacked figures to plot."))
    cells = [
        [
            esc(r["name"]) + (" <b>(this run)</b>" if r["run_id"] == record.id else ""),
            esc(r["status"]),
            pct(r["clean_acc"]),
            pct(r["attacked_acc"]),
            num(r["tcav_sensitivity"]),
            "★" if r["pareto"] else "",
        ]
        for r in rows
    ]
    parts.append(table(["run", "status", "clean", "attacked", "TCAV sensitivity", "Pareto-best"], cells, (2, 3, 4)))
    return section("sweep", title, *parts)


def _sweep_label(row: dict) -> str:
    return f"λ={row['lam']:g}" if row["lam"] is not None else str(row["method"])


# -- the report -------------------------------------------------------------------------------------------------------


def build_report(store: RunStore, run_id: str) -> str:
    """The audit report of run `run_id` of `store` as one self-contained HTML page."""
    record = _finished_run(store, run_id)
    card = _card(record)
    corrected = load_checkpoint(record.outputs["checkpoint"])
    cav = load_cav(record.outputs["cav_file"])
    base, base_why = _base_model(record)
    dataset, dataset_why = _dataset(record, corrected, store.workspace)
    result = record.correction
    body = [
        _header(record),
        _model_and_data(record, corrected, base, dataset, dataset_why),
        _annotations(record, cav, card, dataset, dataset_why),
        _cav_section(result.cav, cav),
        _config_section(record.config),
        _figures_section(result.concepts[0]),
        _concepts_section(result),
        _heatmaps(record, base, corrected, base_why),
        _training(record.history or list(result.history), result.seconds),
        _sweep(store, record),
    ]
    return page(f"Audit report · {record.name} · {record.id}", body)


def write_report(store: RunStore, run_id: str, out: str | os.PathLike) -> Path:
    """Write the audit report of `run_id` to `out` (atomically, its folder made if needed); returns its path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, build_report(store, run_id).encode("utf-8"))
    logger.info("wrote the audit report of run %s to %s", run_id, out)
    return out
