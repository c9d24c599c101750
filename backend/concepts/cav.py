"""Concept Activation Vectors: fit a direction h for a concept (an artifact) in a layer's latent space.

Kinds (one registry):
- `pattern` (default): the signal pattern cov(a, t) / var(t) in closed form; for binary labels it is the difference
  of the class means. It follows the artifact even when other features are correlated with the labels.
- `svm`, `ridge`, `lasso`, `logistic`: linear filters from scikit-learn with class-balanced weights and the
  regularisation chosen by cross-validated grid search (AUC). Filters maximise separability and can point away from
  the artifact itself (Haufe et al. 2014; Pahde et al. 2024).
Every CAV is unit norm and oriented so that concept samples score higher. All functions here are pure: arrays in,
arrays out.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

import numpy as np

from backend.concepts.coverage import orthonormal_rows
from backend.errors import ConfigError
from backend.options import check_choices, option

__all__ = [
    "CavKind",
    "CavScope",
    "DEFAULT_SCOPE",
    "CavConfig",
    "Cav",
    "register_cav",
    "cav_kinds",
    "fit_cav",
    "load_cav",
    "validate_concept_data",
]

CavKind = Literal["pattern", "svm", "ridge", "lasso", "logistic"]
# Which samples a CAV is fitted on: those of the class the artifact is tied to (the seed's default) or all.
CavScope = Literal["attacked_class", "all"]
DEFAULT_SCOPE = "attacked_class"
# Activations below _TINY in magnitude count as zero, above _HUGE are refused (see validate_concept_data).
_TINY, _HUGE = 1e-30, 1e30
# (activations (N, C), labels (N,) in {0, 1}, config) -> (direction (C,), chosen hyperparameters)
Fitter = Callable[[np.ndarray, np.ndarray, "CavConfig"], tuple[np.ndarray, dict]]


@dataclass(frozen=True)
class _CavKindInfo:
    name: str
    fit: Fitter
    description: str


_KINDS: dict[str, _CavKindInfo] = {}


def register_cav(name: str, *, description: str) -> Callable[[Fitter], Fitter]:
    def decorate(fit: Fitter) -> Fitter:
        if name in _KINDS:
            raise ValueError(f"CAV kind {name!r} is registered twice")
        _KINDS[name] = _CavKindInfo(name, fit, description)
        return fit

    return decorate


def cav_kinds() -> dict[str, str]:
    """Registered CAV kinds and their one-line descriptions."""
    return {name: info.description for name, info in _KINDS.items()}


@dataclass(frozen=True)
class CavConfig:
    """How to fit a CAV. `grid` overrides the kind's regularisation grid (C for svm/logistic, alpha otherwise)."""

    kind: CavKind = option(
        "pattern",
        label="CAV kind",
        help="pattern CAVs follow the artifact's signal (robust, the default); filter CAVs (svm, ridge, lasso, "
        "logistic) separate the samples but may point elsewhere",
        choices=lambda: tuple(_KINDS),
    )
    cv_folds: int = option(3, help="cross-validation folds of the filter kinds' regularisation search")
    grid: tuple[float, ...] | None = None
    max_iter: int = option(5000, help="solver iterations of the filter kinds")
    seed: int = option(0, help="random seed of the cross-validation folds")

    def __post_init__(self) -> None:
        check_choices(self)
        if self.cv_folds < 2:
            raise ConfigError(f"cv_folds must be at least 2, got {self.cv_folds}")
        if self.grid is not None and (not self.grid or any(v <= 0 for v in self.grid)):
            raise ConfigError("a regularisation grid needs positive values")


@dataclass(frozen=True)
class Cav:
    """A fitted, unit-norm CAV and where it came from: the samples it was fitted on (`sample_ids`), those of them
    that show the concept (`concept_ids`), the scope they were drawn from (the attacked class or all classes) and,
    once saved, its name."""

    vector: np.ndarray
    kind: str
    layer: str
    pooling: str
    concept: str
    sample_ids: tuple[str, ...]
    n_concept: int
    n_other: int
    fit_seconds: float
    params: dict = field(default_factory=dict)
    scope: str = "all"
    attacked_class: str | None = None
    concept_ids: tuple[str, ...] = ()
    name: str = ""
    basis: np.ndarray | None = None

    @property
    def rank(self) -> int:
        """The number of directions a correction along this CAV penalises: 1, or the rows of its basis."""
        return 1 if self.basis is None else len(self.basis)

    def with_basis(self, basis: np.ndarray | None) -> Cav:
        """This CAV with a concept subspace `basis` (r, C) (None or rank 1: the vector alone); checked to be
        orthonormal, of the vector's width, with the vector first."""
        if basis is not None:
            basis = _checked_basis(basis, self.vector)
        return replace(self, basis=None if basis is None or len(basis) == 1 else basis)

    def scores(self, activations: np.ndarray) -> np.ndarray:
        """Concept scores (N,) of pooled activations (N, C): their projection onto the CAV."""
        activations = np.asarray(activations)
        if activations.ndim != 2 or activations.shape[1] != self.vector.shape[0]:
            raise ConfigError(
                f"activations of shape {activations.shape} do not fit a CAV of {self.vector.shape[0]} channels"
            )
        return activations.astype(np.float64) @ self.vector

    def to_dict(self) -> dict:
        """Everything about the CAV, its vector included, JSON-ready."""
        return asdict(self) | {
            "vector": [float(v) for v in self.vector],
            "sample_ids": list(self.sample_ids),
            "concept_ids": list(self.concept_ids),
            "basis": None if self.basis is None else [[float(v) for v in row] for row in self.basis],
        }

    @classmethod
    def from_dict(cls, data: dict, where: str = "the CAV") -> Cav:
        """A CAV from `to_dict`'s output; anything missing or inconsistent is an error naming `where`."""
        known = {f.name for f in fields(cls)}
        try:
            vector = np.asarray(data["vector"], dtype=np.float64)
            values = {k: v for k, v in data.items() if k in known} | {"vector": vector}
            values["sample_ids"] = tuple(values.get("sample_ids", ()))
            values["concept_ids"] = tuple(values.get("concept_ids", ()))
            values["basis"] = None
            cav = cls(**values)
            basis = None if data.get("basis") is None else np.asarray(data["basis"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where} is not a CAV file ({exc!r})") from exc
        if vector.ndim != 1 or not np.isfinite(vector).all() or abs(np.linalg.norm(vector) - 1) > 1e-6:
            raise ConfigError(f"the vector of {where} is not a finite unit vector")
        try:
            return cav.with_basis(basis)
        except ConfigError as exc:
            raise ConfigError(f"the basis of {where} is not a concept subspace: {exc}") from exc

    def save(self, path: str | Path) -> Path:
        """Write the CAV as one JSON file (`<path>.json`, vector included); returns its path."""
        path = Path(path).with_suffix(".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path


def _checked_basis(basis: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """`basis` as an orthonormal (r, C) float64 array whose first row is `vector`; anything else is an error."""
    basis = orthonormal_rows(basis)
    if basis.shape[1] != len(vector) or abs(float(basis[0] @ vector) - 1) > 1e-6:
        raise ConfigError(
            f"a basis of shape {basis.shape} does not start with the CAV's vector of {len(vector)} channels"
        )
    return basis


def load_cav(path: str | Path) -> Cav:
    """Read a CAV file written by `Cav.save` (or by a CAV export); a missing or malformed file is an error naming
    it. Files of the earlier two-file format (`.json` + `.npy` beside it) load too."""
    path = Path(path)
    path = path if path.suffix == ".json" else path.with_suffix(".json")
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict) and data.get("vector") is None and path.with_suffix(".npy").exists():
            data["vector"] = np.load(path.with_suffix(".npy")).tolist()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the CAV at {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a CAV file")
    return Cav.from_dict(data, where=str(path))


def validate_concept_data(activations: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check activations (N, C) and binary labels (N,) before fitting; returns them as float64 / int arrays.

    Besides shapes, labels and NaN/inf, the activations must be real numbers with at least one channel, not all zero
    (a dead layer has no direction), and at most `_HUGE` in magnitude. Magnitudes below `_TINY` are flushed to zero,
    as GPUs flush denormals: squaring them underflows, and on such input liblinear's LinearSVC (the svm kind) loops
    for ever (seen at |a| <= 1e-160, and at |a| >= 1e100 with overflow).
    """
    x = np.asarray(activations)
    if x.ndim != 2:
        raise ConfigError(f"CAVs are fitted on pooled activations of shape (N, C); got shape {x.shape}")
    if x.shape[1] == 0:
        raise ConfigError(f"the activations have no channels (shape {x.shape}); choose another layer")
    if np.iscomplexobj(x):
        raise ConfigError("activations must be real numbers, got complex ones")
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != len(x):
        raise ConfigError(f"need one concept label per sample: {len(x)} samples, labels of shape {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ConfigError("concept labels must be 0 (clean) or 1 (shows the concept)")
    y = y.astype(np.int64)
    n_concept, n_other = int(y.sum()), int(len(y) - y.sum())
    if n_concept < 2 or n_other < 2:
        raise ConfigError(
            f"a CAV needs at least 2 samples with the concept and 2 without; got {n_concept} with and {n_other} without"
        )
    try:
        x = x.astype(np.float64)  # a copy: the flush below never touches the caller's array
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"activations must be real numbers, got an array of {x.dtype}: {exc}") from exc
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        first = rows[:5].tolist()
        raise ConfigError(f"activations hold NaN or infinite values in {len(rows)} samples (first: {first})")
    magnitude = np.abs(x)
    x[magnitude < _TINY] = 0.0
    peak = float(magnitude.max())
    if peak < _TINY:
        raise ConfigError(f"all activations are zero (below {_TINY:g}): a dead layer? choose another layer or pooling")
    if peak > _HUGE:
        raise ConfigError(
            f"the largest activation magnitude is {peak:.3g}, over {_HUGE:g}: the fit would overflow; "
            "rescale the activations or choose another layer"
        )
    return x, y


def fit_cav(
    activations: np.ndarray,
    labels: np.ndarray,
    config: CavConfig | None = None,
    *,
    layer: str = "",
    pooling: str = "",
    concept: str = "artifact",
    sample_ids: Sequence[str] | None = None,
) -> Cav:
    """Fit a CAV of `config.kind` (default: pattern) to activations (N, C) and concept labels (N,) in {0, 1}."""
    config = config or CavConfig()
    x, y = validate_concept_data(activations, labels)
    if sample_ids is not None and len(sample_ids) != len(x):
        raise ConfigError(f"{len(sample_ids)} sample ids for {len(x)} samples")
    start = time.perf_counter()
    direction, params = _KINDS[config.kind].fit(x, y, config)
    norm = np.linalg.norm(direction)
    if not np.isfinite(norm) or norm == 0:
        raise ConfigError(f"the {config.kind} fit produced no direction (all weights zero); try another kind or grid")
    direction = direction / norm
    scores = x @ direction
    if scores[y == 1].mean() < scores[y == 0].mean():
        direction = -direction
    seconds = time.perf_counter() - start
    return Cav(
        vector=direction,
        kind=config.kind,
        layer=layer,
        pooling=pooling,
        concept=concept,
        sample_ids=tuple(sample_ids) if sample_ids is not None else (),
        n_concept=int(y.sum()),
        n_other=int(len(y) - y.sum()),
        fit_seconds=seconds,
        params=params,
    )


# ---------------------------------------------------------------------------------------------------------------
# Kinds.


@register_cav("pattern", description="signal pattern cov(a, t) / var(t): follows the artifact (closed form)")
def _fit_pattern(x: np.ndarray, y: np.ndarray, config: CavConfig) -> tuple[np.ndarray, dict]:
    t = y.astype(np.float64)
    t_centred = t - t.mean()
    direction = (x - x.mean(axis=0)).T @ t_centred / (t_centred @ t_centred)
    return direction, {}


def _auc_scorer(estimator, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, x @ np.ravel(estimator.coef_), sample_weight=sample_weight))


def _grid_search(estimator, name: str, grid: Sequence[float], x, y, config: CavConfig, **fit_params):
    """Cross-validated choice of one regularisation parameter by AUC of the linear scores; refit on all data.
    Solvers that stop at `max_iter` before converging are reported in the params, not as warnings."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    folds = min(config.cv_folds, int(y.sum()), int(len(y) - y.sum()))
    search = GridSearchCV(
        estimator,
        {name: list(grid)},
        scoring=_auc_scorer,
        cv=StratifiedKFold(n_splits=max(folds, 2), shuffle=True, random_state=config.seed),
        refit=True,
        error_score=0.5,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        search.fit(x, y, **fit_params)
    converged = True
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            converged = False
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    params = {name: float(search.best_params_[name]), "cv_auc": float(search.best_score_), "converged": converged}
    return np.ravel(search.best_estimator_.coef_).copy(), params


def _balanced_weights(y: np.ndarray) -> np.ndarray:
    counts = np.bincount(y, minlength=2).astype(np.float64)
    return (len(y) / (2 * counts))[y]


@register_cav("svm", description="linear SVM filter (LinearSVC, C by cross-validated grid search)")
def _fit_svm(x: np.ndarray, y: np.ndarray, config: CavConfig) -> tuple[np.ndarray, dict]:
    from sklearn.svm import LinearSVC

    grid = config.grid or tuple(10.0**k for k in range(-5, 3))
    model = LinearSVC(class_weight="balanced", max_iter=config.max_iter, random_state=config.seed)
    return _grid_search(model, "C", grid, x, y, config)


@register_cav("ridge", description="ridge classifier filter (alpha by cross-validated grid search)")
def _fit_ridge(x: np.ndarray, y: np.ndarray, config: CavConfig) -> tuple[np.ndarray, dict]:
    from sklearn.linear_model import RidgeClassifier

    grid = config.grid or tuple(10.0**k for k in range(-2, 6))
    return _grid_search(RidgeClassifier(class_weight="balanced"), "alpha", grid, x, y, config)


@register_cav("lasso", description="lasso regression filter on the 0/1 labels (alpha by cross-validated grid search)")
def _fit_lasso(x: np.ndarray, y: np.ndarray, config: CavConfig) -> tuple[np.ndarray, dict]:
    from sklearn.linear_model import Lasso

    grid = config.grid or tuple(10.0**k for k in range(-5, 0))
    model = Lasso(max_iter=config.max_iter, random_state=config.seed)
    return _grid_search(model, "alpha", grid, x, y, config, sample_weight=_balanced_weights(y))


@register_cav("logistic", description="logistic regression filter (C by cross-validated grid search)")
def _fit_logistic(x: np.ndarray, y: np.ndarray, config: CavConfig) -> tuple[np.ndarray, dict]:
    from sklearn.linear_model import LogisticRegression

    grid = config.grid or tuple(10.0**k for k in range(-5, 3))
    model = LogisticRegression(class_weight="balanced", max_iter=config.max_iter, random_state=config.seed)
    return _grid_search(model, "C", grid, x, y, config)
