"""A correction run's result as one typed object: a row per concept (its CAV and its figures before and after), the
training history, the time and the files it wrote. Serialised only where it is stored (the run store, `--json`)."""

from __future__ import annotations

from dataclasses import dataclass

from backend.concepts import CavSummary
from backend.evaluation import EVIDENCE_LIMIT, EvaluationResult, gap_closed_interval

__all__ = ["ConceptOutcome", "RunOutputs", "RunResult", "lesion_overlap_advice"]


@dataclass(frozen=True)
class ConceptOutcome:
    """One concept of a run: its CAV, the class its artifact is tied to, its own λ (None: the method's), the
    figures before and after the correction on its attacked images and the 95% interval of the gap it closed
    (resampled from the two evaluations' hits when they are in memory, as a run makes them; stored thereafter)."""

    cav: CavSummary
    attacked_class: str | None
    lam: float | None
    before: EvaluationResult
    after: EvaluationResult
    gap_closed_interval: list[float] | None = None

    def __post_init__(self) -> None:
        if self.gap_closed_interval is None and self.before.hits is not None and self.after.hits is not None:
            object.__setattr__(self, "gap_closed_interval", gap_closed_interval(self.before.hits, self.after.hits))

    @property
    def reliable(self) -> bool | None:
        """Whether the attacked figures before and after can be trusted (see `EvaluationResult.reliable`)."""
        verdicts = (self.before.reliable, self.after.reliable)
        return False if False in verdicts else None if None in verdicts else True

    @property
    def name(self) -> str | None:
        return self.cav.name

    @property
    def concept(self) -> str | None:
        return self.cav.concept

    @property
    def estimate_label(self) -> str | None:
        """How far the attacked figures can be trusted, in two words (None: no attacked figures)."""
        if self.after.attacked_acc is None:
            return None
        if not self.after.estimated:
            return "measured"
        return {True: "checked estimate", False: "UNRELIABLE estimate"}.get(self.reliable, "unchecked estimate")

    def gap_closed_text(self) -> str:
        """The gap closed with its 95% interval ("37% (19% to 55%)"); "–" where there is no gap."""
        closed = self.gap_closed()
        if closed is None:
            return "–"
        interval = self.gap_closed_interval
        if not interval:
            return f"{closed:.0%}"
        span = f"{interval[0]:.0%} to {interval[1]:.0%}"
        if interval[1] - interval[0] > 1:  # a gap before that is hardly larger than its own noise
            return f"{closed:.0%}, too uncertain to say ({span}: the gap before is within its noise)"
        return f"{closed:.0%} ({span})"

    def gap_closed(self) -> float | None:
        """The share of the clean-vs-attacked accuracy gap before the correction that it removed (None: no gap or
        no attacked figures)."""
        b, a = self.before, self.after
        if None in (b.attacked_acc, a.attacked_acc) or b.clean_acc - b.attacked_acc <= 0:
            return None
        return 1 - (a.clean_acc - a.attacked_acc) / (b.clean_acc - b.attacked_acc)

    def to_dict(self) -> dict:
        return {
            "name": self.cav.name,
            "concept": self.cav.concept,
            "source": self.cav.source,
            "attacked_class": self.attacked_class,
            "lam": self.lam,
            "cav": self.cav.to_dict(),
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "gap_closed": self.gap_closed(),
            "gap_closed_interval": self.gap_closed_interval,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ConceptOutcome:
        """A row as `to_dict` wrote it (its name, concept and source over its CAV's); an older row had no `cav`."""
        cav = (data.get("cav") or {}) | {k: data[k] for k in ("name", "concept", "source") if k in data}
        return cls(
            CavSummary.from_dict(cav),
            data.get("attacked_class"),
            data.get("lam"),
            EvaluationResult.from_dict(data["before"]),
            EvaluationResult.from_dict(data["after"]),
            data.get("gap_closed_interval"),
        )


@dataclass(frozen=True)
class RunOutputs:
    """The files a run wrote: the corrected checkpoint, its model card, the CAV file and the example images."""

    checkpoint: str
    card: str
    cav_file: str
    examples: str

    def to_dict(self) -> dict:
        return {"checkpoint": self.checkpoint, "card": self.card, "cav_file": self.cav_file, "examples": self.examples}


@dataclass(frozen=True)
class RunResult:
    """What a correction run produced. `concepts` has a row per concept, none special; `before`, `after` and `cav`
    are the first concept's, the run's headline."""

    method: str
    concepts: tuple[ConceptOutcome, ...]
    history: tuple[dict, ...]
    seconds: float
    cached_path: bool
    outputs: RunOutputs

    @property
    def before(self) -> EvaluationResult:
        return self.concepts[0].before

    @property
    def after(self) -> EvaluationResult:
        return self.concepts[0].after

    @property
    def cav(self) -> CavSummary:
        return self.concepts[0].cav

    def to_dict(self) -> dict:
        """The stored form: the outputs' paths, `before`/`after`/`cav` of the first concept (what scripts read) and
        a row per concept."""
        return self.outputs.to_dict() | {
            "method": self.method,
            "cached_path": self.cached_path,
            "seconds": self.seconds,
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "cav": self.cav.to_dict(),
            "concepts": [c.to_dict() for c in self.concepts],
            "history": list(self.history),
        }

    @classmethod
    def from_dict(cls, data: dict) -> RunResult:
        """The result as `to_dict` wrote it. An older record's first row lacks the CAV's details and figures beyond
        the headline: the stored `cav`, `before` and `after` fill them in."""
        rows = list(data.get("concepts") or [{"before": data["before"], "after": data["after"]}])
        rows[0] = rows[0] | {"cav": data.get("cav"), "before": data["before"], "after": data["after"]}
        outputs = RunOutputs(**{k: str(data.get(k, "")) for k in ("checkpoint", "card", "cav_file", "examples")})
        return cls(
            method=data.get("method", ""),
            concepts=tuple(ConceptOutcome.from_dict(row) for row in rows),
            history=tuple(data.get("history") or ()),
            seconds=float(data.get("seconds") or 0.0),
            cached_path=bool(data.get("cached_path")),
            outputs=outputs,
        )


def lesion_overlap_advice(outcome: ConceptOutcome, augment: float) -> str | None:
    """For a run without pasted copies whose artifact sits on what the model looks at (its transplant masks cover
    more than EVIDENCE_LIMIT of the model's evidence on clean images, as on a lesion): what closed such shortcuts in
    `bench natural`. None otherwise."""
    covered = (outcome.before.estimate_check or {}).get("evidence_covered")
    if augment or covered is None or covered <= EVIDENCE_LIMIT:
        return None
    return (
        f"The artifact sits on what the model looks at: its masks cover {covered:.0%} of the model's evidence on "
        "clean images. A penalty along the CAV alone leaves most of such a shortcut, because the model never saw the "
        "artifact on the other classes; on the lesion-overlapping artifacts of `bench natural` it closed 17–38% of "
        "the true gap, against 61–88% with pasted copies and every layer training (Correct's training loop: "
        "augment 0.3, trainable all, lr 0.0003; the CLI: --augment 0.3 --trainable all --lr 3e-4)."
    )
