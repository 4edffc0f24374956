"""Loss functions with sample and class weights for the skweight estimators.

All losses are plain :class:`torch.nn.Module` objects called as
``loss(input, target, sample_weight=None)`` and computed in float32 (float64
for float64 input). The classification and segmentation losses take logits
and integer targets; the regression losses (:class:`MSELoss`,
:class:`L1Loss`, :class:`HuberLoss`) take outputs and real targets of shape
``(N,)`` or ``(N, T)`` and a per-target ``target_weight``. For long-tailed
classes, :class:`LogitAdjustedLoss` and :class:`LDAMLoss` also take the
training label distribution (``class_prior``, ``class_counts``), held in a
buffer that can be updated in place. Shared conventions:

- ``sample_weight`` has shape (N,) (one weight per sample or image) or the
  target's shape (one weight per element);
- a per-class weight vector ``c`` acts exactly as the sample weight
  ``c[target]``, and multiplies a given ``sample_weight``;
- elements whose target equals ``ignore_index`` contribute to nothing
  (classification and segmentation losses);
- for the element-wise losses, ``reduction="mean"`` is the plain mean of the
  weighted element losses over the non-ignored elements (not divided by the
  sum of weights).
"""

from ._ce import CrossEntropyLoss
from ._dice import DiceLoss
from ._dice_ce import DiceCELoss
from ._focal import FocalLoss, SigmoidFocalLoss
from ._ldam import LDAMLoss
from ._logit_adjusted import LogitAdjustedLoss
from ._regression import HuberLoss, L1Loss, MSELoss
from ._tversky import TverskyLoss

__all__ = [
    "CrossEntropyLoss",
    "DiceCELoss",
    "DiceLoss",
    "FocalLoss",
    "HuberLoss",
    "L1Loss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "MSELoss",
    "SigmoidFocalLoss",
    "TverskyLoss",
]
