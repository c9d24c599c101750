"""Candidate artifacts of a class, before anyone annotated them: clusters of its samples' explanations (SpRAy on
latent relevances) and its most relevant channels (a concept atlas), each a set of samples with reference images and
a latent direction, ranked by how distinct their reasons are from the rest of the class."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Literal

import numpy as np

from backend.data.dataset import ClarcDataset
from backend.discovery.relevance import DiscoveryCancelled, LatentRelevances, latent_relevances
from backend.discovery.spray import SpectralClusters, normalised_relevance, spectral_clusters, whitened
from backend.errors import ConfigError
from backend.models import LoadedModel, get_layer
from backend.options import check_choices, option
from backend.progress import ProgressCallback, ProgressEvent

__all__ = [
    "AtlasChannel",
    "Candidate",
    "ClassDiscovery",
    "DiscoveryCancelled",
    "RevealConfig",
    "discover_class",
    "reveal",
]

CandidateKind = Literal["cluster", "channel"]


@dataclass(frozen=True)
class RevealConfig:
    """What discovery looks at: a layer (None: the model's default), a split, the classes (empty: all), how many
    clusters at most, how many channels the atlas shows per class, and how many reference images per candidate."""

    layer: str | None = option(None, help="layer whose relevances are clustered (default: the model's)")
    split: Literal["train", "val", "test"] = option("train", help="split whose samples are analysed")
    max_clusters: int = option(8, help="most clusters per class (the eigengap picks how many)")
    neighbors: int = option(10, help="neighbours per sample in the clustering graph")
    whiten: float = option(
        0.98,
        help="share of the relevance variance whose principal components, scaled to unit variance, are "
        "clustered when the class has two samples per channel or more (0: cluster the relevance shares as they are)",
    )
    channels: int = option(8, help="channels per class in the concept atlas")
    references: int = option(8, help="reference images per candidate")
    min_size: int = option(5, help="smallest candidate, in samples")
    classes: tuple[str, ...] = ()  # the classes to analyse; empty: every class

    def __post_init__(self) -> None:
        check_choices(self)
        for name in ("max_clusters", "neighbors", "channels", "references", "min_size"):
            if getattr(self, name) < (2 if name == "max_clusters" else 1):
                raise ConfigError(f"{name} must be at least {2 if name == 'max_clusters' else 1}")
        if not 0 <= self.whiten <= 1:
            raise ConfigError(f"whiten must be between 0 and 1, got {self.whiten}")


@dataclass(frozen=True)
class Candidate:
    """A possible shortcut in class `class_name`: its samples (ids), their share of the class, how distinct their
    explanations are (`score`, a d' along the direction between their mean relevance and the rest's), reference
    images (most typical for a cluster; most relevant for a channel, with its top activating ones), the latent
    direction it adds (mean max-pooled activation of its samples minus the rest's: a pattern CAV) and its rank."""

    class_name: str
    kind: CandidateKind
    key: str
    sample_ids: tuple[str, ...]
    share: float
    score: float
    references: tuple[str, ...]
    top_activating: tuple[str, ...]
    direction: tuple[float, ...]
    channel: int | None
    rank: int = 0

    @property
    def title(self) -> str:
        return f"{self.class_name} · {self.key}"

    def to_json(self) -> dict:
        return asdict(self) | {"size": len(self.sample_ids)}


@dataclass(frozen=True)
class AtlasChannel:
    """One of a class's most relevant channels: its mean share of the class's relevance, the samples whose
    explanations lean on it most (top relevant) and those that activate it most (top activating)."""

    channel: int
    relevance_share: float
    top_relevant: tuple[str, ...]
    top_activating: tuple[str, ...]


@dataclass(frozen=True)
class ClassDiscovery:
    """Everything discovery found in one class: its candidates (best first), the clustering with its 2-D embedding,
    the atlas's channels with their mean relevance share, and the analysed samples' ids."""

    class_name: str
    layer: str
    sample_ids: tuple[str, ...]
    clusters: SpectralClusters
    atlas: tuple[AtlasChannel, ...]
    candidates: tuple[Candidate, ...]

    def to_json(self) -> dict:
        return {
            "class": self.class_name,
            "layer": self.layer,
            "n": len(self.sample_ids),
            "n_clusters": self.clusters.n_clusters,
            "eigengap": self.clusters.eigengap,
            "atlas": [asdict(a) for a in self.atlas],
            "candidates": [c.to_json() for c in self.candidates],
        }


def discover_class(
    model: LoadedModel,
    dataset: ClarcDataset,
    class_name: str,
    config: RevealConfig = RevealConfig(),
    *,
    workspace: str | os.PathLike | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> ClassDiscovery:
    """Candidates of one class: its training samples' latent relevances for the class, clustered (SpRAy) and read
    channel by channel (atlas), ranked by `score`. Candidates holding half the class or more are its main reasons,
    not shortcuts, and are left out."""
    layer = config.layer or model.default_layer
    get_layer(model.module, layer)
    if class_name not in dataset.classes:
        raise ConfigError(f"unknown class {class_name!r}; the classes are {list(dataset.classes)}")
    view = dataset.split(config.split)
    k = dataset.classes.index(class_name)
    members = np.flatnonzero(view.labels == k)
    if len(members) < max(2 * config.min_size, 4):
        raise ConfigError(
            f"class {class_name} has {len(members)} samples in the {config.split} split: too few to cluster"
        )
    found = latent_relevances(
        model, view, dataset.dataset_id, members, layer, k, workspace=workspace, on_progress=on_progress, cancel=cancel
    )
    ids = tuple(view.sample_ids[i] for i in members)
    features = normalised_relevance(found.relevance)
    graph_space = _graph_space(features, config.whiten)
    clusters = spectral_clusters(graph_space, max_clusters=config.max_clusters, n_neighbors=config.neighbors)
    atlas = _atlas(found, features, ids, config)
    proposals = [
        _cluster_candidate(found, features, np.isin(clusters.labels, group), key, config)
        for key, group in _cluster_groups(graph_space, clusters)
    ]
    proposals += [_channel_candidate(found, features, a.channel, config) for a in atlas]
    kept = [p for p in proposals if p is not None and config.min_size <= p["n"] and p["share"] < 0.5]
    kept = _without_duplicates(sorted(kept, key=lambda p: -p["score"]))
    candidates = tuple(
        Candidate(
            class_name=class_name,
            kind=p["kind"],
            key=p["key"],
            sample_ids=tuple(ids[i] for i in np.flatnonzero(p["mask"])),
            share=p["share"],
            score=p["score"],
            references=tuple(ids[i] for i in p["references"]),
            top_activating=tuple(ids[i] for i in p["top_activating"]),
            direction=tuple(float(v) for v in _direction(found.activation, p["mask"])),
            channel=p.get("channel"),
            rank=rank,
        )
        for rank, p in enumerate(kept, start=1)
    )
    return ClassDiscovery(class_name, layer, ids, clusters, atlas, candidates)


def reveal(
    model: LoadedModel,
    dataset: ClarcDataset,
    config: RevealConfig = RevealConfig(),
    *,
    workspace: str | os.PathLike | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> list[ClassDiscovery]:
    """`discover_class` for each class of `config` (all by default), reporting one progress step per class."""
    classes: Sequence[str] = config.classes or dataset.classes
    found = []
    for step, name in enumerate(classes, start=1):
        if cancel is not None and cancel.is_set():
            raise DiscoveryCancelled("discovery cancelled")
        found.append(discover_class(model, dataset, name, config, workspace=workspace, cancel=cancel))
        if on_progress:
            on_progress(ProgressEvent("classes", step, len(classes), {"class": name}))
    return found


def _graph_space(features: np.ndarray, whiten: float) -> np.ndarray:
    """Where the clustering graph is built: the whitened relevances when the class has at least two samples per
    channel; with fewer, the covariance's small eigenvalues are mostly noise, which whitening would blow up (on 140
    melanomas of 128 channels it cost the planted marker's cluster a quarter of its precision)."""
    return whitened(features, whiten) if whiten and len(features) >= 2 * features.shape[1] else features


def _cluster_groups(space: np.ndarray, clusters: SpectralClusters) -> list[tuple[str, tuple[int, ...]]]:
    """The spectral clusters and the unions that Ward's criterion builds from them in the clustering's `space`: one
    shortcut often splits into neighbouring clusters (a ruler on the left and at the top), and a union holds all of
    it. Merges weigh the clusters' sizes, so small clusters join each other before they join the class's main mode.
    When one cluster holds half the class or more (its main mode), everything off it is a group too."""
    labels, n = clusters.labels, clusters.n_clusters
    sizes = np.bincount(labels, minlength=n)
    groups = [(c,) for c in range(n)]
    live = {(c,): (space[labels == c].mean(axis=0), int(sizes[c])) for c in range(n)}
    while len(live) > 2:  # the last merge would be the whole class
        a, b = min(combinations(live, 2), key=lambda pair: _ward_cost(*live[pair[0]], *live[pair[1]]))
        (centre_a, n_a), (centre_b, n_b) = live.pop(a), live.pop(b)
        merged = tuple(sorted(a + b))
        live[merged] = ((centre_a * n_a + centre_b * n_b) / (n_a + n_b), n_a + n_b)
        groups.append(merged)
    main = int(np.argmax(sizes))
    off_main = tuple(c for c in range(n) if c != main)
    if 2 * sizes[main] >= len(labels) and len(off_main) > 1 and off_main not in groups:
        groups.append(off_main)
    return [(_group_key(g), g) for g in groups]


def _ward_cost(centre_a: np.ndarray, n_a: int, centre_b: np.ndarray, n_b: int) -> float:
    """The growth of the within-cluster sum of squares when two clusters merge."""
    return n_a * n_b / (n_a + n_b) * float(np.sum((centre_a - centre_b) ** 2))


def _group_key(group: tuple[int, ...]) -> str:
    return f"cluster {group[0] + 1}" if len(group) == 1 else "clusters " + "+".join(str(c + 1) for c in group)


def _without_duplicates(ranked: list[dict], overlap: float = 0.8, inside: float = 0.9) -> list[dict]:
    """Drop a proposal that repeats a better-ranked one: mostly the same samples (Jaccard >= `overlap`), or nearly
    all of its samples within it (a part of a group already shown)."""
    kept: list[dict] = []
    for p in ranked:
        repeats = False
        for q in kept:
            common = (p["mask"] & q["mask"]).sum()
            if common / (p["mask"] | q["mask"]).sum() >= overlap or common >= inside * p["n"]:
                repeats = True
                break
        if not repeats:
            kept.append(p)
    return kept


def _atlas(found: LatentRelevances, features: np.ndarray, ids: tuple[str, ...], config: RevealConfig):
    """The `config.channels` channels with the largest mean relevance share in the class, with their references."""
    mean = features.mean(axis=0)
    n = config.references
    return tuple(
        AtlasChannel(
            channel=int(c),
            relevance_share=float(mean[c]),
            top_relevant=tuple(ids[i] for i in np.argsort(-features[:, c])[:n]),
            top_activating=tuple(ids[i] for i in np.argsort(-found.activation[:, c])[:n]),
        )
        for c in np.argsort(-mean)[: config.channels]
        if mean[c] > 0
    )


def _distinctness(features: np.ndarray, mask: np.ndarray) -> float:
    """d' of the samples in `mask` against the rest along the line between their mean relevance vectors."""
    inside, outside = features[mask], features[~mask]
    if len(inside) < 2 or len(outside) < 2:
        return 0.0
    w = inside.mean(axis=0) - outside.mean(axis=0)
    norm = np.linalg.norm(w)
    if norm == 0:
        return 0.0
    a, b = inside @ (w / norm), outside @ (w / norm)
    spread = np.sqrt((a.var() + b.var()) / 2)
    return float((a.mean() - b.mean()) / spread) if spread > 0 else float("inf")


def _proposal(features: np.ndarray, mask: np.ndarray, kind: str, key: str, references, top_activating) -> dict:
    return {
        "kind": kind,
        "key": key,
        "mask": mask,
        "n": int(mask.sum()),
        "share": float(mask.mean()),
        "score": _distinctness(features, mask),
        "references": references,
        "top_activating": top_activating,
    }


def _cluster_candidate(found: LatentRelevances, features, mask, key: str, config: RevealConfig) -> dict:
    """A cluster; its references are its members closest to the cluster's mean relevance."""
    members = np.flatnonzero(mask)
    distance = np.linalg.norm(features[members] - features[members].mean(axis=0), axis=1)
    references = members[np.argsort(distance)[: config.references]]
    top = members[np.argsort(-found.activation[members].sum(axis=1))[: config.references]]
    return _proposal(features, mask, "cluster", key, references, top)


def _channel_candidate(found: LatentRelevances, features, channel: int, config: RevealConfig) -> dict | None:
    """A channel: the samples whose explanation leans on it, split from the rest at the Otsu threshold of its
    relevance share; references are its most relevant samples, with its most activating ones."""
    share = features[:, channel]
    mask = share > _otsu(share)
    if not mask.any() or mask.all():
        return None
    references = np.argsort(-share)[: config.references]
    top = np.argsort(-found.activation[:, channel])[: config.references]
    return _proposal(features, mask, "channel", f"channel {channel}", references, top) | {"channel": channel}


def _otsu(values: np.ndarray, bins: int = 64) -> float:
    """The threshold that splits `values` into two groups of the largest between-group variance."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return hi
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(counts)
    total = weight[-1]
    cum_mean = np.cumsum(counts * centres)
    w0, w1 = weight[:-1], total - weight[:-1]
    valid = (w0 > 0) & (w1 > 0)
    m0 = np.divide(cum_mean[:-1], w0, out=np.zeros_like(centres[:-1]), where=valid)
    m1 = np.divide(cum_mean[-1] - cum_mean[:-1], w1, out=np.zeros_like(centres[:-1]), where=valid)
    between = np.where(valid, w0 * w1 * (m0 - m1) ** 2, -1)
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))  # an empty gap ties: take its middle
    return float(edges[1:-1][best[len(best) // 2]])


def _direction(activation: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Unit mean difference of the max-pooled activations of the samples in `mask` and of the rest."""
    diff = activation[mask].mean(axis=0) - activation[~mask].mean(axis=0)
    norm = np.linalg.norm(diff)
    return diff / norm if norm > 0 else diff
