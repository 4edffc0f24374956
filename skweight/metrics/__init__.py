"""Metrics for label images and for the calibration of probabilities.

The mask metrics compare integer label masks such as those returned by the
``predict`` method of a segmentation estimator:

- :func:`dice_score` -- Dice (F1) overlap, greater is better;
- :func:`iou_score` -- intersection over union (Jaccard index), greater is
  better;
- :func:`hausdorff_distance` -- symmetric Hausdorff distance between mask
  boundaries (optionally the percentile variant, e.g. HD95), lower is better;
- :func:`mean_surface_distance` -- average symmetric surface distance
  between mask boundaries, lower is better;
- :func:`normalized_surface_dice` -- fraction of both boundaries that lies
  within a tolerance of the other one, greater is better.

All of them share the same input conventions, class selection and
aggregation over images and classes, and each has a ready-made scikit-learn
scorer (:data:`dice_scorer`, :data:`iou_scorer`,
:data:`neg_hausdorff_distance_scorer`,
:data:`neg_mean_surface_distance_scorer`,
:data:`normalized_surface_dice_scorer`) for use as
``GridSearchCV(..., scoring=...)``; the ``neg_`` scorers return the negated
distance, so that greater is better. :func:`make_segmentation_scorer`
builds scorers with non-default options. The three boundary metrics measure
distances in pixels, or in physical units with ``spacing``.

The calibration metrics take true labels and predicted probabilities
(``predict_proba``), of a classifier or of a segmenter's pixels:

- :func:`reliability_curve` -- accuracy against confidence in bins of the
  top-label confidence, the curve of a reliability diagram;
- :func:`expected_calibration_error` -- the weighted mean gap between the
  two, lower is better.
"""

from ._calibration import expected_calibration_error, reliability_curve
from ._overlap import dice_score, iou_score
from ._scorers import make_segmentation_scorer
from ._surface import hausdorff_distance, mean_surface_distance, normalized_surface_dice

__all__ = [
    "dice_score",
    "dice_scorer",
    "expected_calibration_error",
    "hausdorff_distance",
    "iou_score",
    "iou_scorer",
    "make_segmentation_scorer",
    "mean_surface_distance",
    "neg_hausdorff_distance_scorer",
    "neg_mean_surface_distance_scorer",
    "normalized_surface_dice",
    "normalized_surface_dice_scorer",
    "reliability_curve",
]

# The ready-made scorers live here rather than in _scorers.py because Sphinx
# reads the ``#:`` comment of a module attribute from the module it is
# documented in, skweight.metrics.

#: Scorer for :func:`dice_score` with default options (greater is better).
#: ``set_score_request`` changes a scorer in place; use
#: ``make_segmentation_scorer("dice")`` for a private copy first.
dice_scorer = make_segmentation_scorer("dice")

#: Scorer for :func:`iou_score` with default options (greater is better).
iou_scorer = make_segmentation_scorer("iou")

#: Scorer for the negated :func:`hausdorff_distance` (greater is better)
#: with ``empty_value="diagonal"``, so that a missed structure is penalised
#: with the image diagonal rather than turning the score into NaN.
neg_hausdorff_distance_scorer = make_segmentation_scorer("neg_hausdorff_distance")

#: Scorer for the negated :func:`mean_surface_distance` (greater is better)
#: with ``empty_value="diagonal"``, as :data:`neg_hausdorff_distance_scorer`.
neg_mean_surface_distance_scorer = make_segmentation_scorer("neg_mean_surface_distance")

#: Scorer for :func:`normalized_surface_dice` with the default tolerance of
#: one pixel (greater is better).
normalized_surface_dice_scorer = make_segmentation_scorer("normalized_surface_dice")
