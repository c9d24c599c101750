"""Is a transplant estimate to be trusted? A check of the transplant itself, for each model it measures.

The transplant pastes an artifact cut by a mask; where the mask misses part of the artifact, or carries the donor's
lesion with it, or the artifact shares pixels with the lesion, the pasted images do not show the model what the
natural ones do, and the attacked accuracy it estimates is off (in either direction) by more than any interval says.
The check compares, on training images of the class the artifact is tied to (for every model measured, a corrected one
against the artifact's effect on the model before):
- the natural effect: the model's log-odds of that class and the CAV score on the annotated (natural) artifact
  images, against the same class's other images;
- the transplanted effect: the same figures on those other images with a donor's artifact pasted in, paired.
Their ratio is 1 where the transplant reproduces the artifact. It also measures how much of the model's evidence
for the class on the clean images the pasted masks cover: a mask over the lesion replaces what the model looks at,
so the estimate measures more than the artifact. And on the test images it pastes a sham: the same masks cut from
images of the class without the artifact; where that alone moves accuracy, the pasted pixels carry more than the
artifact. The verdict says which of these failed and what would make the estimate reliable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from backend.attribution import class_heatmaps
from backend.concepts import Cav
from backend.concepts.activations import pool_activations
from backend.data import SplitView, view_batch
from backend.models import LoadedModel, capture_layer, eval_mode

__all__ = [
    "RATIO_BAND",
    "EVIDENCE_LIMIT",
    "SHAM_LIMIT",
    "TransplantCheck",
    "check_transplant",
    "unchecked",
    "with_sham",
]

RATIO_BAND = (0.75, 1.33)  # transplanted / natural effect within this band: the transplant moves the model alike
SHAM_LIMIT = 0.02  # a sham transplant (the masks cut from images without the artifact) may move accuracy this much
EVIDENCE_LIMIT = 0.2  # the masks may cover at most this share of the model's evidence on the clean images
MIN_NATURAL = 5  # natural artifact images the comparison needs at least
_TARGETS = 256  # images of the class the artifacts are pasted into, at most
_HEATMAPS = 64  # of them, for the evidence the masks cover
_DRAWS = 1000
ADVICE = (
    "To measure instead of estimate: supply an attacked copy of the test images (your test images with the artifact, "
    "same file names), or annotate test images that show the artifact (their accuracy is shown beside the estimate)."
)


@dataclass(frozen=True)
class TransplantCheck:
    """The check's figures and verdict. `logit_ratio`/`score_ratio`: transplanted effect / natural effect on the
    class's log-odds / the CAV score (with 95% intervals); `evidence_covered`: mean share of the clean images'
    positive relevance under the pasted masks; `reliable`: None where the check could not be made."""

    reliable: bool | None
    reasons: list[str] = field(default_factory=list)
    advice: str = ADVICE
    n_natural: int = 0
    n_transplanted: int = 0
    natural_logit_shift: float | None = None
    transplant_logit_shift: float | None = None
    logit_ratio: float | None = None
    logit_ratio_interval: list[float] | None = None
    natural_score_shift: float | None = None
    transplant_score_shift: float | None = None
    score_ratio: float | None = None
    score_ratio_interval: list[float] | None = None
    evidence_covered: float | None = None
    mask_share: float | None = None
    sham_change: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TransplantCheck:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def verdict(self) -> str:
        """One line: reliable, unreliable with why, or unchecked with why."""
        if self.reliable:
            return (
                f"checked: pasted artifacts move the model like natural ones (log-odds ×{self.logit_ratio:.2f}, "
                f"CAV score ×{self.score_ratio:.2f}) and cover {self.evidence_covered:.0%} of its evidence"
            )
        state = "unreliable" if self.reliable is False else "unchecked"
        return f"{state}: {'; '.join(self.reasons)}"


def with_sham(check: TransplantCheck, sham_change: float) -> TransplantCheck:
    """The check with the sham transplant's result: the change of test accuracy when the same masks are cut from
    images without the artifact and pasted the same way. Beyond `SHAM_LIMIT` the pasted pixels carry more than the
    artifact (a piece of the donor's lesion, the cut's edge), and the estimate measures that too."""
    if abs(sham_change) <= SHAM_LIMIT:
        return replace(check, sham_change=sham_change)
    reason = (
        f"pasting the same masks cut from images without the artifact already changes accuracy by "
        f"{sham_change * 100:+.1f} points: the pasted pixels carry more than the artifact"
    )
    return replace(check, sham_change=sham_change, reliable=False, reasons=[*check.reasons, reason])


def unchecked(reason: str) -> TransplantCheck:
    """The verdict where the check cannot be made (too few natural images, no CAV)."""
    return TransplantCheck(reliable=None, reasons=[reason])


def _log_odds_and_scores(model: LoadedModel, view: SplitView, indices, cav: Cav, k: int, batch_size: int = 128):
    """The log-odds of class `k` (N,) and the CAV scores (N,) of samples `indices` of `view`, in one pass."""
    module = model.module
    device = next(module.parameters()).device
    h = torch.as_tensor(cav.vector, dtype=torch.float32, device=device)
    odds, scores = [], []
    with eval_mode(module), capture_layer(module, cav.layer) as captured, torch.no_grad():
        for s in range(0, len(indices), batch_size):
            x, _ = view_batch(view, indices[s : s + batch_size], model.meta.normalization)
            logits = module(x.to(device)).float()
            acts = pool_activations(captured.pop(), cav.pooling).float()
            captured.clear()
            others = torch.cat([logits[:, :k], logits[:, k + 1 :]], dim=1)
            odds.append((logits[:, k] - torch.logsumexp(others, dim=1)).cpu().numpy())
            scores.append((acts.flatten(1) @ h).cpu().numpy() if acts.ndim == 2 else _unpooled(acts, h))
    return np.concatenate(odds).astype(np.float64), np.concatenate(scores).astype(np.float64)


def _unpooled(acts: torch.Tensor, h: torch.Tensor) -> np.ndarray:
    """The mean CAV score over positions of unpooled maps (B, C, ...)."""
    return torch.einsum("bc...,c->b...", acts, h).flatten(1).mean(1).cpu().numpy()


def _shifts(natural: np.ndarray, clean: np.ndarray, pasted: np.ndarray, rng) -> tuple:
    """The natural shift (natural mean − clean mean) and the transplanted one (paired mean of pasted − clean), with
    `_DRAWS` bootstrap draws of both (natural and target images resampled independently)."""
    nat, tra = natural.mean() - clean.mean(), (pasted - clean).mean()
    n_i = rng.integers(len(natural), size=(_DRAWS, len(natural)))
    t_i = rng.integers(len(clean), size=(_DRAWS, len(clean)))
    return float(nat), float(tra), natural[n_i].mean(1) - clean[t_i].mean(1), (pasted - clean)[t_i].mean(1)


def _ratio(nat: float, tra: float, nat_b: np.ndarray, tra_b: np.ndarray, reference: float | None):
    """1 + (transplanted − natural shift) / the artifact's natural effect on the model the estimate started from
    (`reference`; None: this model's, so the ratio is transplanted / natural), and its bootstrap interval."""
    scale, scale_b = (nat, nat_b) if reference is None else (reference, np.full_like(nat_b, reference))
    if scale == 0:
        return None, None
    with np.errstate(divide="ignore", invalid="ignore"):
        draws = 1 + (tra_b - nat_b) / scale_b
    draws = draws[np.isfinite(draws)]
    interval = [float(v) for v in np.percentile(draws, [2.5, 97.5])] if len(draws) else None
    return float(1 + (tra - nat) / scale), interval


def _no_effect(nat_b: np.ndarray) -> bool:
    """Whether the natural shift's 95% interval contains 0."""
    return bool(np.percentile(nat_b, 2.5) <= 0 <= np.percentile(nat_b, 97.5))


def check_transplant(
    model: LoadedModel,
    train: SplitView,
    pasted: SplitView,
    natural: np.ndarray,
    targets: np.ndarray,
    cav: Cav,
    k: int,
    *,
    seed: int = 0,
    reference: TransplantCheck | None = None,
) -> TransplantCheck:
    """Compare the transplant with the natural artifact (see the module docstring). `train`: the clean training
    split; `pasted`: the same split with the transplant attack; `natural`: indices of annotated training images of
    class `k` (natural artifact images); `targets`: indices of the class's other training images. `reference`: the
    check made on the model the estimate started from (before a correction); a later model's check measures the
    transplant's deviation from the natural artifact in units of the artifact's effect on that model, since a
    corrected model may hardly react to the artifact at all."""
    if len(natural) < MIN_NATURAL or len(targets) < MIN_NATURAL:
        return unchecked(
            f"the check needs at least {MIN_NATURAL} annotated and {MIN_NATURAL} other training images of the "
            f"attacked class; there are {len(natural)} and {len(targets)}"
        )
    rng = np.random.default_rng(seed)
    if len(targets) > _TARGETS:
        targets = np.sort(rng.choice(targets, _TARGETS, replace=False))
    nat_odds, nat_scores = _log_odds_and_scores(model, train, natural, cav, k)
    clean_odds, clean_scores = _log_odds_and_scores(model, train, targets, cav, k)
    pasted_odds, pasted_scores = _log_odds_and_scores(model, pasted, targets, cav, k)
    n_logit, t_logit, *logit_draws = _shifts(nat_odds, clean_odds, pasted_odds, rng)
    n_score, t_score, *score_draws = _shifts(nat_scores, clean_scores, pasted_scores, rng)
    ref_logit = reference.natural_logit_shift if reference is not None else None
    ref_score = reference.natural_score_shift if reference is not None else None
    logit_ratio, logit_interval = _ratio(n_logit, t_logit, *logit_draws, ref_logit)
    score_ratio, score_interval = _ratio(n_score, t_score, *score_draws, ref_score)
    logit_zero = _no_effect(logit_draws[0]) if reference is None else False
    covered, mask_share = _evidence_covered(model, train, pasted, targets[:_HEATMAPS], k)
    reasons = []
    low, high = RATIO_BAND
    unit = "" if reference is None else " (in units of the artifact's effect before the correction)"
    if logit_zero:
        reasons.append(
            "the natural artifact does not measurably move the model's log-odds on the annotated images "
            f"({n_logit:+.2f}), so the transplant cannot be compared with it"
        )
    elif logit_ratio is None or not low <= logit_ratio <= high:
        reasons.append(
            f"pasted artifacts move the model's log-odds ×{(logit_ratio or 0):.2f} as much as natural ones{unit} "
            f"({t_logit:+.2f} vs {n_logit:+.2f}): the masks "
            + ("miss part of the artifact" if (logit_ratio or 0) < low else "carry more than the artifact")
        )
    if score_ratio is None or not low <= score_ratio <= high:
        reasons.append(f"pasted artifacts score ×{(score_ratio or 0):.2f} as high on the CAV as natural ones{unit}")
    if covered > EVIDENCE_LIMIT:
        reasons.append(
            f"the pasted masks cover {covered:.0%} of the model's evidence on the clean images (the lesion): the "
            "estimate measures more than the artifact"
        )
    return TransplantCheck(
        reliable=None if logit_zero and len(reasons) == 1 else not reasons,
        reasons=reasons,
        n_natural=len(natural),
        n_transplanted=len(targets),
        natural_logit_shift=n_logit,
        transplant_logit_shift=t_logit,
        logit_ratio=logit_ratio,
        logit_ratio_interval=logit_interval,
        natural_score_shift=n_score,
        transplant_score_shift=t_score,
        score_ratio=score_ratio,
        score_ratio_interval=score_interval,
        evidence_covered=covered,
        mask_share=mask_share,
    )


def _evidence_covered(model: LoadedModel, train: SplitView, pasted: SplitView, indices, k: int):
    """The mean share of class `k`'s positive relevance on the clean images that falls under the masks pasted into
    them, and the masks' mean share of the image."""
    x, _ = view_batch(train, indices, model.meta.normalization)
    relevance = class_heatmaps(model, x, target=k).maps.clip(min=0)
    masks = np.stack([pasted.mask(int(i)) for i in indices]).astype(np.float64)
    total = relevance.sum(axis=(1, 2))
    inside = (relevance * masks).sum(axis=(1, 2))
    shares = np.divide(inside, total, out=np.zeros_like(inside), where=total > 0)
    return float(shares.mean()), float(masks.mean())
