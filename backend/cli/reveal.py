"""`python -m backend reveal`: candidate shortcuts of a model, found before anyone annotated them (SpRAy clusters
and concept-atlas channels of each class's latent relevances), printed ranked and written as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from backend.cli.common import model_and_dataset, write_json
from backend.cli.registry import command
from backend.discovery import RevealConfig, reveal
from backend.models import model_fingerprint
from backend.options import CommonOptions, DatasetOption, JsonOutput, ModelOption, nested, option

__all__ = ["RevealOptions"]


@dataclass(frozen=True, kw_only=True)
class RevealOptions(CommonOptions, ModelOption, DatasetOption, JsonOutput):
    """find candidate shortcuts: clusters of explanations and the channels a class leans on

    For each class, explain its training images at a layer (LRP relevance per channel), cluster the explanations
    (spectral clustering, the number of clusters by the eigengap) and read the class's most relevant channels; rank the
    groups of samples by how distinct their reasons are (d'). Groups of half the class or more are its main reasons and
    are left out. Review a candidate's samples in the dashboard's Reveal page, or label them from the JSON
    (sample_ids)."""

    classes: tuple[str, ...] = option((), help="a class (repeatable)", flag="--class", metavar="CLASS")
    reveal: RevealConfig = nested(RevealConfig)
    top: int = option(5, help="candidates printed per class (default 5; the JSON has all)")


@command("reveal", RevealOptions)
def _run_reveal(opts: RevealOptions) -> int:
    model, dataset = model_and_dataset(opts)
    config = replace(opts.reveal, classes=opts.classes)
    found = reveal(model, dataset, config, workspace=opts.workspace)
    for result in found:
        print(
            f"{result.class_name}: {len(result.sample_ids)} images, {result.clusters.n_clusters} clusters "
            f"(eigengap {result.clusters.eigengap:.3f}), {len(result.candidates)} candidates"
        )
        for c in result.candidates[: opts.top]:
            print(f"  {c.rank:2d}. {c.key:22s} {len(c.sample_ids):5d} images ({c.share:.0%})  d' {c.score:.2f}")
    write_json(
        opts.json,
        {
            "model": model_fingerprint(model),
            "dataset": dataset.dataset_id,
            "config": asdict(config),
            "classes": {r.class_name: r.to_json() for r in found},
        },
    )
    return 0
