"""Attribution: LRP heatmaps (class and concept-conditional), the heatmap cache, heatmap outlier scores, artifact
masks with R_bias, and rendering of heatmaps as pictures."""

from backend.attribution.heatmap_cache import cached_heatmaps
from backend.attribution.lrp import (
    AttributionMethod,
    CompositeName,
    Heatmaps,
    attribution_method,
    check_images,
    class_heatmaps,
    concept_heatmaps,
    concept_masks,
    lrp_context,
)
from backend.attribution.masks import (
    MaskConfig,
    heatmap_masks,
    iou,
    pointing_game,
    r_bias,
    strongest_region,
    tune_mask_config,
)
from backend.attribution.outliers import (
    cached_outlier_scores,
    heatmap_features,
    heatmap_outlier_scores,
    split_heatmap_features,
    split_outlier_scores,
    stored_outlier_scores,
)
from backend.attribution.rendering import heatmap_colors, heatmap_rgba, image_grid, overlay, side_by_side_png, to_png

__all__ = [
    "AttributionMethod",
    "CompositeName",
    "Heatmaps",
    "MaskConfig",
    "attribution_method",
    "cached_heatmaps",
    "cached_outlier_scores",
    "check_images",
    "class_heatmaps",
    "concept_heatmaps",
    "concept_masks",
    "heatmap_colors",
    "heatmap_features",
    "heatmap_masks",
    "heatmap_outlier_scores",
    "split_heatmap_features",
    "heatmap_rgba",
    "image_grid",
    "iou",
    "lrp_context",
    "overlay",
    "pointing_game",
    "r_bias",
    "side_by_side_png",
    "split_outlier_scores",
    "stored_outlier_scores",
    "strongest_region",
    "to_png",
    "tune_mask_config",
]
