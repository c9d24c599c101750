"""`python -m backend cav` (fit a CAV for a concept and report its quality) and `python -m backend cavs` (the saved
CAVs: list, rename, delete, export, import)."""

from __future__ import annotations

import argparse
from pathlib import Path

from backend.cli.common import add_options, given_options, model_and_dataset, write_json
from backend.concepts import (
    DEFAULT_POOLING,
    DEFAULT_SCOPE,
    CavConfig,
    CavLibrary,
    fit_concept,
    planted_labels,
    read_concept_labels,
)
from backend.models import model_fingerprint

__all__ = ["add_cav", "add_cavs"]


def add_cav(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "cav",
        parents=[common],
        help="fit a CAV for a concept, report its quality, and save it",
        description="Fit a Concept Activation Vector from concept labels (a CSV sample_id,label: 1 shows the "
        "concept) or, without labels, from the artifact planted in the dataset; print AUC, alignment and "
        "significance; save it under a name (--save) for corrections to follow, or to a file (--out).",
    )
    p.add_argument("--checkpoint", help="model (default: the shipped default model)")
    p.add_argument("--dataset", help="dataset spec (default: the one the model was trained on)")
    p.add_argument("--labels", help="CSV with columns sample_id,label (default: the planted artifact)")
    p.add_argument("--split", default="train", choices=["train", "val", "test"], help="split to fit on")
    p.add_argument("--layer", help="layer name (default: the architecture's default CAV layer)")
    p.add_argument("--pooling", default=DEFAULT_POOLING, choices=["max", "mean"], help=f"default {DEFAULT_POOLING}")
    p.add_argument(
        "--scope",
        default=DEFAULT_SCOPE,
        choices=["attacked_class", "all"],
        help="fit on the samples of the attacked class (the seed's default) or of all classes",
    )
    p.add_argument("--attacked-class", help="the class the concept is tied to (default: where most of it is)")
    add_options(p, CavConfig)
    p.add_argument("--concept", default="artifact", help="name of the concept, e.g. 'skin marker'")
    p.add_argument(
        "--random",
        type=int,
        help="random CAVs for the significance test (default 100 for pattern, 20 for filters; 0: skip)",
    )
    p.add_argument("--save", metavar="NAME", help="save the CAV in the workspace under this name")
    p.add_argument("--out", help="also write the CAV to this file (.json)")
    p.add_argument("--json", help="write the quality figures as JSON to this file")
    p.set_defaults(run=_run_cav)


def _run_cav(args: argparse.Namespace) -> int:
    model, dataset = model_and_dataset(args)
    labels = read_concept_labels(args.labels) if args.labels else planted_labels(dataset, args.split)
    fit = fit_concept(
        model,
        dataset,
        labels,
        split=args.split,
        layer=args.layer,
        pooling=args.pooling,
        scope=args.scope,
        attacked_class=args.attacked_class,
        config=CavConfig(**given_options(args, CavConfig)),
        concept=args.concept,
        n_random=args.random,
        workspace=args.workspace,
    )
    summary = fit.summary()
    where = "all classes" if summary["scope"] == "all" else f"class {summary['attacked_class']}"
    print(
        f"{summary['kind']} CAV for '{args.concept}' in {summary['layer']} ({summary['pooling']}-pooled), samples of "
        f"{where}: {summary['n_concept']} with the concept vs {summary['n_other']} without, fitted in "
        f"{summary['fit_seconds']:.3f} s"
    )
    for key in ("train_auc", "held_out_auc", "alignment"):
        if summary[key] is not None:
            print(f"  {key:13s} {summary[key]:.3f}")
    if fit.significance is not None:
        verdict = "distinguishable from random" if fit.significance.significant else "NOT distinguishable from random"
        print(f"  significance  p = {fit.significance.p_value:.3f} ({verdict})")
    if args.save:
        saved = CavLibrary(args.workspace).save(fit, args.save, dataset_id=dataset.dataset_id, model=model)
        summary["saved"] = saved.summary()
        print(f"saved as '{saved.name}' (id {saved.id}): correct along it with --cav '{saved.name}'")
    if args.out:
        summary["path"] = str(fit.cav.save(args.out))
        print(f"wrote {summary['path']}")
    write_json(args.json, summary)
    return 0


def add_cavs(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("cavs", help="saved CAVs: list, rename, delete, export, import")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    owner = argparse.ArgumentParser(add_help=False)
    owner.add_argument("--checkpoint", help="model (default: the shipped default model)")
    owner.add_argument("--dataset", help="dataset spec (default: the one the model was trained on)")
    q = verbs.add_parser("list", parents=[common, owner], help="the CAVs saved for a model and dataset")
    q.add_argument("--all", action="store_true", help="every saved CAV of the workspace")
    q.add_argument("--json", help="write the list as JSON to this file")
    q.set_defaults(run=_run_list)
    q = verbs.add_parser("rename", parents=[common, owner], help="give a saved CAV another name")
    q.add_argument("cav", help="name or id")
    q.add_argument("name")
    q.set_defaults(run=_run_rename)
    q = verbs.add_parser("delete", parents=[common, owner], help="delete a saved CAV")
    q.add_argument("cav", help="name or id")
    q.set_defaults(run=_run_delete)
    q = verbs.add_parser("export", parents=[common, owner], help="write a saved CAV to a file (.json)")
    q.add_argument("cav", help="name or id")
    q.add_argument("--out", required=True, help="the file to write")
    q.set_defaults(run=_run_export)
    q = verbs.add_parser("import", parents=[common, owner], help="save a CAV file for this model and dataset")
    q.add_argument("file", help="a CAV file (.json) written by `cavs export` or `cav --out`")
    q.add_argument("--name", help="the name to save it under (default: the file's)")
    q.set_defaults(run=_run_import)


def _owned(args: argparse.Namespace):
    model, dataset = model_and_dataset(args)
    return CavLibrary(args.workspace), dict(dataset_id=dataset.dataset_id, model=model_fingerprint(model)), model


def _run_list(args: argparse.Namespace) -> int:
    library, owner, _ = _owned(args)
    records = library.list() if args.all else library.list(**owner)
    print(f"{'name':24s} {'id':12s} {'concept':16s} {'layer':12s} {'kind':8s} {'scope':15s} {'class':14s} n")
    for r in records:
        klass = r.attacked_class or "-"
        print(
            f"{r.name:24s} {r.id:12s} {r.concept:16s} {r.layer:12s} {r.kind:8s} {r.scope:15s} {klass:14s} {r.n_concept}"
        )
    write_json(args.json, {"cavs": [r.summary() | {"quality": r.quality} for r in records]})
    return 0


def _run_rename(args: argparse.Namespace) -> int:
    library, owner, _ = _owned(args)
    renamed = library.rename(library.get(args.cav, **owner).id, args.name)
    print(f"renamed to '{renamed.name}'")
    return 0


def _run_delete(args: argparse.Namespace) -> int:
    library, owner, _ = _owned(args)
    record = library.get(args.cav, **owner)
    library.delete(record.id)
    print(f"deleted '{record.name}'")
    return 0


def _run_export(args: argparse.Namespace) -> int:
    library, owner, _ = _owned(args)
    Path(args.out).write_bytes(library.export(library.get(args.cav, **owner).id))
    print(f"wrote {args.out}")
    return 0


def _run_import(args: argparse.Namespace) -> int:
    library, owner, model = _owned(args)
    saved = library.import_bytes(
        Path(args.file).read_bytes(), dataset_id=owner["dataset_id"], model=model, name=args.name
    )
    print(f"saved as '{saved.name}' (id {saved.id})")
    return 0
