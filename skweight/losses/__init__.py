"""Loss functions with sample and class weights for the skweight estimators.

All losses are plain :class:`torch.nn.Module` objects called as
``loss(input, target, sample_weight=None)`` and computed in float32 (float64
for float64 input). The classification and segmentation losses take logits
and integer targets; the regression losses (:class:`MSELoss`,
:class:`L1Loss`, :class:`HuberLoss`) take outputs and real targets of shape
``(N,)`` or ``(N, T)`` and a per-target ``target_weight``. For long-tailed
classes, :class:`LogitAdjustedLoss` and :class:`LDAMLoss` also take the
training label distribution (``class_prior``, ``class_counts``), held in a
buffer that can be updated in place. The multi-label losses
(:class:`BinaryCrossEntropyLoss`, :class:`SigmoidFocalLoss`,
:class:`AsymmetricLoss`, :class:`BinaryLogitAdjustedLoss`, and the overlap
losses with ``sigmoid=True``) take one sigmoid logit per label or channel,
``(N, C)`` or ``(N, C, d1, ...)``, and 0/1 targets of the same shape.
For long-tailed regression targets, :class:`BalancedMSELoss` (Balanced
MSE) adds to the squared error the log-normaliser of a Gaussian likelihood
over the training label prior, so that predictions of rare targets are not
pulled towards frequent ones; its prior (a histogram, a Gaussian mixture,
or the batch) is computed from the weighted training targets by
``fit_prior``, one prior per target, and its noise scale ``sigma`` can be
learned.
Shared conventions:

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

from ._asymmetric import AsymmetricLoss
from ._balanced_mse import BalancedMSELoss
from ._binary import BinaryCrossEntropyLoss
from ._binary_logit_adjusted import BinaryLogitAdjustedLoss
from ._ce import CrossEntropyLoss
from ._dice import DiceLoss
from ._dice_ce import DiceCELoss
from ._focal import FocalLoss, SigmoidFocalLoss
from ._ldam import LDAMLoss
from ._logit_adjusted import LogitAdjustedLoss
from ._regression import HuberLoss, L1Loss, MSELoss
from ._tversky import TverskyLoss

__all__ = [
    "AsymmetricLoss",
    "BalancedMSELoss",
    "BinaryCrossEntropyLoss",
    "BinaryLogitAdjustedLoss",
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
