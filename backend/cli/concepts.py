"""`python -m backend cav` (fit a CAV for a concept and report its quality) and `python -m backend cavs` (the saved
CAVs: list, rename, delete, export, import)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from backend.cli.common import model_and_dataset, write_json
from backend.cli.registry import command, group
from backend.concepts import (
    DEFAULT_POOLING,
    DEFAULT_SCOPE,
    CavConfig,
    CavLibrary,
    CavPooling,
    CavScope,
    fit_concept,
    planted_labels,
    read_concept_labels,
)
from backend.models import model_fingerprint
from backend.options import (
    CommonOptions,
    DatasetOption,
    JsonOutput,
    LayerOption,
    ModelOption,
    nested,
    option,
    switch,
)

__all__ = ["CavOptions", "CavsOptions"]

_FIT_OPTIONS = ("split", "layer", "pooling", "scope", "attacked_class", "config", "concept")


@dataclass(frozen=True, kw_only=True)
class CavOptions(CommonOptions, ModelOption, DatasetOption, LayerOption, JsonOutput):
    """fit a CAV for a concept, report its quality, and save it

    Fit a Concept Activation Vector from concept labels (a CSV sample_id,label: 1 shows the concept) or, without labels,
    from the artifact planted in the dataset; print AUC, alignment and significance; save it under a name (--save) for
    corrections to follow, or to a file (--out)."""

    labels: str | None = option(None, help="CSV with columns sample_id,label (default: the planted artifact)")
    split: Literal["train", "val", "test"] = option("train", help="split to fit on")
    pooling: CavPooling = option(DEFAULT_POOLING, help="how the layer's maps are pooled")
    scope: CavScope = option(
        DEFAULT_SCOPE, help="fit on the samples of the attacked class (the seed's default) or of all classes"
    )
    attacked_class: str | None = option(None, help="the class the concept is tied to (default: where most of it is)")
    config: CavConfig = nested(CavConfig)
    concept: str = option("artifact", help="name of the concept, e.g. 'skin marker'")
    random: int | None = option(
        None, help="random CAVs for the significance test (default 100 for pattern, 20 for filters; 0: skip)"
    )
    save: str | None = option(None, help="save the CAV in the workspace under this name", metavar="NAME")
    out: str | None = option(None, help="also write the CAV to this file (.json)")


@command("cav", CavOptions)
def _run_cav(opts: CavOptions) -> int:
    model, dataset = model_and_dataset(opts)
    labels = read_concept_labels(opts.labels) if opts.labels else planted_labels(dataset, opts.split)
    how = {name: getattr(opts, name) for name in _FIT_OPTIONS}  # named as fit_concept names them
    fit = fit_concept(model, dataset, labels, n_random=opts.random, workspace=opts.workspace, **how)
    summary = fit.summary().to_dict()
    where = "all classes" if summary["scope"] == "all" else f"class {summary['attacked_class']}"
    print(
        f"{summary['kind']} CAV for '{opts.concept}' in {summary['layer']} ({summary['pooling']}-pooled), samples of "
        f"{where}: {summary['n_concept']} with the concept vs {summary['n_other']} without, fitted in "
        f"{summary['fit_seconds']:.3f} s"
    )
    for key in ("train_auc", "held_out_auc", "alignment"):
        if summary[key] is not None:
            print(f"  {key:13s} {summary[key]:.3f}")
    if fit.significance is not None:
        verdict = "distinguishable from random" if fit.significance.significant else "NOT distinguishable from random"
        print(f"  significance  p = {fit.significance.p_value:.3f} ({verdict})")
    if opts.save:
        saved = CavLibrary(opts.workspace).save(fit, opts.save, dataset_id=dataset.dataset_id, model=model)
        summary["saved"] = saved.summary()
        print(f"saved as '{saved.name}' (id {saved.id}): correct along it with --cav '{saved.name}'")
    if opts.out:
        summary["path"] = str(fit.cav.save(opts.out))
        print(f"wrote {summary['path']}")
    write_json(opts.json, summary)
    return 0


group("cavs", help="saved CAVs: list, rename, delete, export, import")


@dataclass(frozen=True, kw_only=True)
class CavsOptions(CommonOptions, ModelOption, DatasetOption):
    """The saved CAVs of a model and dataset."""


@dataclass(frozen=True, kw_only=True)
class _CavsList(CavsOptions, JsonOutput):
    """the CAVs saved for a model and dataset"""

    all: bool = switch(help="every saved CAV of the workspace")


@dataclass(frozen=True, kw_only=True)
class _SavedCav(CavsOptions):
    cav: str = option(help="name or id", positional=True)


@dataclass(frozen=True, kw_only=True)
class _CavsRename(_SavedCav):
    """give a saved CAV another name"""

    name: str = option(help="the new name", positional=True)


@dataclass(frozen=True, kw_only=True)
class _CavsDelete(_SavedCav):
    """delete a saved CAV"""


@dataclass(frozen=True, kw_only=True)
class _CavsExport(_SavedCav):
    """write a saved CAV to a file (.json)"""

    out: str = option(help="the file to write")


@dataclass(frozen=True, kw_only=True)
class _CavsImport(CavsOptions):
    """save a CAV file for this model and dataset"""

    file: str = option(help="a CAV file (.json) written by `cavs export` or `cav --out`", positional=True)
    name: str | None = option(None, help="the name to save it under (default: the file's)")


def _owned(opts: CavsOptions):
    model, dataset = model_and_dataset(opts)
    return CavLibrary(opts.workspace), dict(dataset_id=dataset.dataset_id, model=model_fingerprint(model)), model


@command("cavs list", _CavsList)
def _run_list(opts: _CavsList) -> int:
    library, owner, _ = _owned(opts)
    records = library.list() if opts.all else library.list(**owner)
    print(f"{'name':24s} {'id':12s} {'concept':16s} {'layer':12s} {'kind':8s} {'scope':15s} {'class':14s} n")
    for r in records:
        klass = r.attacked_class or "-"
        print(
            f"{r.name:24s} {r.id:12s} {r.concept:16s} {r.layer:12s} {r.kind:8s} {r.scope:15s} {klass:14s} {r.n_concept}"
        )
    write_json(opts.json, {"cavs": [r.summary() | {"quality": r.quality} for r in records]})
    return 0


@command("cavs rename", _CavsRename)
def _run_rename(opts: _CavsRename) -> int:
    library, owner, _ = _owned(opts)
    renamed = library.rename(library.get(opts.cav, **owner).id, opts.name)
    print(f"renamed to '{renamed.name}'")
    return 0


@command("cavs delete", _CavsDelete)
def _run_delete(opts: _CavsDelete) -> int:
    library, owner, _ = _owned(opts)
    record = library.get(opts.cav, **owner)
    library.delete(record.id)
    print(f"deleted '{record.name}'")
    return 0


@command("cavs export", _CavsExport)
def _run_export(opts: _CavsExport) -> int:
    library, owner, _ = _owned(opts)
    Path(opts.out).write_bytes(library.export(library.get(opts.cav, **owner).id))
    print(f"wrote {opts.out}")
    return 0


@command("cavs import", _CavsImport)
def _run_import(opts: _CavsImport) -> int:
    library, owner, model = _owned(opts)
    saved = library.import_bytes(
        Path(opts.file).read_bytes(), dataset_id=owner["dataset_id"], model=model, name=opts.name
    )
    print(f"saved as '{saved.name}' (id {saved.id})")
    return 0
