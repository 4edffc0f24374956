"""The engine room: everything ``fit`` and prediction need, and only they.

Private to skweight; the estimators (:mod:`skweight.classifier`,
:mod:`skweight.regressor`, :mod:`skweight.segmenter`) are its only users.
Read it in this order:

- :mod:`.base`: :class:`~.base.BaseCNN`, the fit template (its docstring
  maps every step of ``fit`` to the function that does it), parameters,
  prediction and persistence;
- :mod:`.targets`: the target objects (``targets_``): labels or real values,
  their encoding, class weights, priors and output checks;
- :mod:`.weight_path`: split, fold and normalise the weights, once;
- :mod:`.sampling`: a classifier's ``sampler=``, on the training split;
- :mod:`.loop`: the training loop (skorch's hooks, cheap per step);
- :mod:`.data` and :mod:`.loader`: images in, batches out;
- :mod:`.tiling`: the segmenter's tiled prediction (``tile_shape``);
- :mod:`.persistence`, :mod:`.distributed`, :mod:`.threads`: saving,
  torchrun, thread counts in worker processes.
"""
