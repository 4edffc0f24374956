"""The engine room: everything ``fit`` and prediction need, and only they.

Private to skweight; the estimators (:mod:`skweight.classifier`,
:mod:`skweight.regressor`, :mod:`skweight.segmenter`) are its only users.
Read it in this order:

- :mod:`.base`: :class:`~.base.BaseCNN`, the fit template (its docstring
  maps every step of ``fit`` to the function that does it), parameters,
  prediction and persistence;
- :mod:`.targets`: the protocol of the target objects (``targets_``), and
  the kinds: :mod:`.labels` (class labels, overlapping labels) and
  :mod:`.real` (real values): their encoding, class weights, priors and
  output checks; :mod:`.thresholds` (multi-label decision thresholds);
- :mod:`.weight_path`: split, fold and normalise the weights, once;
- :mod:`.sampling`: a classifier's ``sampler=``, on the training split;
- :mod:`.loop`: the training loop (skorch's hooks, cheap per step), and
  :mod:`.optim` (parameter groups, decoupled weight decay);
- :mod:`.pretrained`: a ``module=`` instance as a starting point: its
  copy, head, input channels, frozen parts, decoupled recipes;
- :mod:`.data` and :mod:`.loader`: images in, batches out;
- :mod:`.tiling`: the segmenter's tiled prediction (``tile_shape``);
- :mod:`.persistence`, :mod:`.distributed`, :mod:`.threads`: saving,
  torchrun, thread counts in worker processes.
"""
