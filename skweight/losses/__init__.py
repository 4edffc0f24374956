"""Loss functions with sample and class weights for the skweight estimators.

All losses are plain :class:`torch.nn.Module` objects called as
``loss(input, target, sample_weight=None)``, with logits as input (computed
in float32, or float64 for float64 input) and these shared conventions:

- ``sample_weight`` has shape (N,) (one weight per sample or image) or the
  target's shape (one weight per element);
- a per-class weight vector ``c`` acts exactly as the sample weight
  ``c[target]``, and multiplies a given ``sample_weight``;
- elements whose target equals ``ignore_index`` contribute to nothing;
- for the element-wise losses, ``reduction="mean"`` is the plain mean of the
  weighted element losses over the non-ignored elements (not divided by the
  sum of weights).
"""

from ._ce import CrossEntropyLoss
from ._dice import DiceLoss
from ._dice_ce import DiceCELoss
from ._focal import FocalLoss, SigmoidFocalLoss
from ._regression import HuberLoss, L1Loss, MSELoss
from ._tversky import TverskyLoss

__all__ = [
    "CrossEntropyLoss",
    "DiceCELoss",
    "DiceLoss",
    "FocalLoss",
    "HuberLoss",
    "L1Loss",
    "MSELoss",
    "SigmoidFocalLoss",
    "TverskyLoss",
]
