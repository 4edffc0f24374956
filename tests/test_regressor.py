import pickle
import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV
from torch.testing import assert_close

from skweight import CNNRegressor
from skweight.exceptions import PredictionCollapseWarning
from skweight.losses import HuberLoss, L1Loss, MSELoss
from skweight.regressor import COLLAPSE_STD_RATIO
from skweight.weighting import ESS_WARN_FRACTION

# Short fits in these tests often stop before the network has learned
# anything; the collapse tests below turn the warning back on.
pytestmark = pytest.mark.filterwarnings(
    "ignore::skweight.exceptions.PredictionCollapseWarning"
)

# A network small enough for sub-second fits on 12x12 images.
TINY = dict(
    module__channels=(8, 16), module__hidden_units=32, batch_size=32, lr=3e-3,
    max_epochs=10,
)




def make_boxes(n, size=12, seed=0, max_side=3):
    """Noisy uint8 images with one bright square; y is its (x, y) centre."""
    rng = np.random.default_rng(seed)
    X = rng.normal(60, 30, size=(n, size, size))
    side = rng.integers(2, max_side + 1, size=n)
    left = rng.integers(0, size - side + 1)
    top = rng.integers(0, size - side + 1)
    for i in range(n):
        X[i, top[i]:top[i] + side[i], left[i]:left[i] + side[i]] += 150
    y = np.stack([left + (side - 1) / 2, top + (side - 1) / 2], axis=1)
    return np.clip(X, 0, 255).astype(np.uint8), y


@pytest.fixture(scope="module")
def boxes():
    return make_boxes(400, seed=0), make_boxes(300, seed=1)


def fit_quiet(reg, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return reg.fit(*args, **kwargs)


# ------------------------------------------------------------------- losses


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (MSELoss, torch.nn.MSELoss),
        (L1Loss, torch.nn.L1Loss),
        (lambda **kw: HuberLoss(delta=0.7, **kw),
         lambda **kw: torch.nn.HuberLoss(delta=0.7, **kw)),
    ],
)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_match_torch_without_weights(ours, theirs, reduction):
    gen = torch.Generator().manual_seed(0)
    x, t = torch.randn(6, 3, generator=gen) * 2, torch.randn(6, 3, generator=gen)
    assert_close(ours(reduction=reduction)(x, t), theirs(reduction=reduction)(x, t))


@pytest.mark.parametrize("cls", [MSELoss, L1Loss, HuberLoss])
def test_losses_weights_are_sample_times_target_weight(cls):
    gen = torch.Generator().manual_seed(1)
    x, t = torch.randn(5, 3, generator=gen), torch.randn(5, 3, generator=gen)
    sw = torch.rand(5, generator=gen)
    tw = torch.tensor([1.0, 0.5, 2.0])
    plain = cls(reduction="none")(x, t)
    got = cls(target_weight=tw, reduction="none")(x, t, sample_weight=sw)
    assert_close(got, plain * sw[:, None] * tw[None, :])
    # "mean" is the plain mean of the weighted elements, not / sum of weights
    assert_close(cls(target_weight=tw)(x, t, sample_weight=sw), got.mean())
    # per-element weights of the target's shape
    ew = torch.rand(5, 3, generator=gen)
    assert_close(cls(reduction="none")(x, t, sample_weight=ew), plain * ew)


def test_mse_loss_gradient_is_finite_for_tiny_weights():
    x = torch.zeros(4, 2, requires_grad=True)
    t = torch.ones(4, 2)
    loss = MSELoss()(x, t, sample_weight=torch.tensor([1.0, 1e-30, 0.0, 1e-45]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    assert_close(loss, torch.tensor(0.25 * (1 + 1e-30 + 1e-45)))


@pytest.mark.parametrize(
    ("kwargs", "call", "match"),
    [
        ({"target_weight": [1.0, -1.0]}, None, "finite non-negative"),
        ({"target_weight": 2.0}, None, "1-D sequence"),
        ({"target_weight": [1.0, 2.0, 3.0]}, "ok", "target_weight has 3 entries"),
        ({"reduction": "avg"}, None, "reduction must be one of"),
        ({}, "shape", "does not match input shape"),
        ({}, "weight_shape", r"sample_weight.shape == \(\d+,\), expected \(4,\)"),
        ({}, "neg_weight", "finite non-negative"),
    ],
)
def test_losses_reject_bad_arguments(kwargs, call, match):
    x, t = torch.zeros(4, 2), torch.ones(4, 2)
    with pytest.raises(ValueError, match=match):
        loss = MSELoss(**kwargs)
        if call == "ok":
            loss(x, t)
        elif call == "shape":
            loss(x, t[:, :1])
        elif call == "weight_shape":
            loss(x, t, sample_weight=torch.ones(3))
        elif call == "neg_weight":
            loss(x, t, sample_weight=-torch.ones(4))


def test_huber_rejects_bad_delta():
    with pytest.raises(ValueError, match="delta must be"):
        HuberLoss(delta=0.0)


# ---------------------------------------------------------- fit and predict


def test_learns_box_centres_and_output_shapes(boxes):
    (X, y), (Xt, yt) = boxes
    reg = CNNRegressor(random_state=0, **TINY).fit(X, y)
    pred = reg.predict(Xt)
    assert pred.shape == (300, 2) and pred.dtype == np.float64
    assert reg.score(Xt, yt) > 0.9
    assert reg.n_outputs_ == 2 and reg.input_shape_ == (1, 12, 12)
    # 1-D y gives 1-D predictions, a column vector keeps its column
    one = CNNRegressor(random_state=0, **{**TINY, "max_epochs": 0})
    assert one.fit(X, y[:, 0]).predict(Xt[:5]).shape == (5,)
    assert one.fit(X, y[:, :1]).predict(Xt[:5]).shape == (5, 1)


def test_default_regressor_learns_story5_box_task():
    """Story 5: the untuned default regressor finds a box's centre."""
    X, y = make_boxes(600, size=24, seed=0)
    Xt, yt = make_boxes(400, size=24, seed=1)
    reg = CNNRegressor(random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PredictionCollapseWarning)
        reg.fit(X, y)
    assert reg.score(Xt, yt) > 0.9


def test_score_is_weighted_r2(boxes):
    (X, y), (Xt, yt) = boxes
    reg = fit_quiet(CNNRegressor(random_state=0, **{**TINY, "max_epochs": 2}), X, y)
    w = np.random.default_rng(0).random(len(yt))
    pred = reg.predict(Xt)
    assert reg.score(Xt, yt, sample_weight=w) == pytest.approx(
        r2_score(yt, pred, sample_weight=w)
    )
    assert reg.score(Xt, yt, sample_weight=w * 1e-300) == pytest.approx(
        reg.score(Xt, yt, sample_weight=w)
    )
    assert reg.score(Xt, yt) == pytest.approx(r2_score(yt, pred))


def test_accepts_flattened_input_with_input_shape(boxes):
    (X, y), (Xt, _) = boxes
    reg = CNNRegressor(input_shape=(1, 12, 12), random_state=0, max_epochs=1)
    fit_quiet(reg, X.reshape(len(X), -1), y)
    assert reg.n_features_in_ == 144
    images = fit_quiet(CNNRegressor(random_state=0, max_epochs=1), X, y)
    assert_allclose(reg.predict(Xt.reshape(len(Xt), -1)), images.predict(Xt))


# ---------------------------------------------------------- target scaling


def test_target_scaling_uses_weighted_statistics(boxes):
    (X, y), _ = boxes
    y = y * [1000.0, 0.001] + [5e4, -3.0]
    w = np.random.default_rng(0).random(len(y))
    reg = CNNRegressor(random_state=0, max_epochs=0).fit(X, y, sample_weight=w)
    mean = np.average(y, axis=0, weights=w)
    std = np.sqrt(np.average((y - mean) ** 2, axis=0, weights=w))
    assert_allclose(reg.target_mean_, mean, rtol=1e-12)
    assert_allclose(reg.target_scale_, std, rtol=1e-12)
    raw = CNNRegressor(standardize_target=False, max_epochs=0).fit(X, y)
    assert_array_equal(raw.target_mean_, [0.0, 0.0])
    assert_array_equal(raw.target_scale_, [1.0, 1.0])


def test_predictions_mapped_back_to_target_units(boxes):
    (X, y), (Xt, yt) = boxes
    a, b = np.array([250.0, 0.01]), np.array([1e4, -7.0])
    reg = CNNRegressor(random_state=0, **TINY).fit(X, y * a + b)
    assert reg.score(Xt, yt * a + b) > 0.9
    # standardisation makes the units irrelevant: the same network is learned
    # (up to float32 rounding, which SGD amplifies over many steps)
    kw = dict(random_state=0, **{**TINY, "max_epochs": 2})
    scaled = fit_quiet(CNNRegressor(**kw), X, y * a + b)
    base = fit_quiet(CNNRegressor(**kw), X, y)
    assert_allclose((scaled.predict(Xt) - b) / a, base.predict(Xt), atol=1e-3)


def test_constant_target_gets_unit_scale(boxes):
    (X, y), (Xt, _) = boxes
    y3 = np.column_stack([y, np.full(len(y), 42.0)])
    reg = CNNRegressor(random_state=0, max_epochs=2).fit(X, y3)
    assert reg.target_scale_[2] == 1.0 and reg.target_mean_[2] == 42.0
    pred = reg.predict(Xt)
    assert np.all(np.isfinite(pred))
    assert np.abs(pred[:, 2] - 42.0).max() < 1.0


def test_partial_fit_keeps_target_scaling(boxes):
    (X, y), _ = boxes
    reg = CNNRegressor(random_state=0, max_epochs=1)
    reg.partial_fit(X, y)
    mean = reg.target_mean_.copy()
    reg.partial_fit(X[:50], y[:50] + 100.0)
    assert_array_equal(reg.target_mean_, mean)
    reg.fit(X[:50], y[:50] + 100.0)
    assert np.all(reg.target_mean_ > 100.0)


# ---------------------------------------------------------- target weights


def test_target_weight_balanced_definition(boxes):
    (X, y), _ = boxes
    y = y * [100.0, 1.0]
    std = CNNRegressor(target_weight="balanced", max_epochs=0).fit(X, y)
    # standardised targets all have variance 1: nothing left to balance
    assert_allclose(std.target_weight_, [1.0, 1.0])
    raw = CNNRegressor(target_weight="balanced", standardize_target=False,
                       max_epochs=0).fit(X, y)
    inv_var = 1.0 / y.var(axis=0)
    assert_allclose(raw.target_weight_, inv_var / inv_var.mean())
    # explicit weights are rescaled to mean 1
    arr = CNNRegressor(target_weight=[3.0, 1.0], max_epochs=0).fit(X, y)
    assert_allclose(arr.target_weight_, [1.5, 0.5])
    assert CNNRegressor(max_epochs=0).fit(X, y).target_weight_ is None


def test_target_weight_steers_what_is_learned(boxes):
    (X, y), (Xt, yt) = boxes
    reg = CNNRegressor(target_weight=[1.0, 0.0], random_state=0, **TINY)
    with warnings.catch_warnings():
        # a target of weight 0 is not expected to be learned: no warning
        warnings.simplefilter("error", PredictionCollapseWarning)
        reg.fit(X, y)
    per_target = r2_score(yt, reg.predict(Xt), multioutput="raw_values")
    assert per_target[0] > 0.8
    assert per_target[1] < 0.3
    # only ratios matter
    scaled = CNNRegressor(target_weight=[5.0, 0.0], random_state=0,
                          **{**TINY, "max_epochs": 2}).fit(X, y)
    same = CNNRegressor(target_weight=[1.0, 0.0], random_state=0,
                        **{**TINY, "max_epochs": 2}).fit(X, y)
    assert_allclose(scaled.predict(Xt), same.predict(Xt), rtol=1e-5)


def test_standardising_balances_targets_of_different_scales(boxes):
    """Story 1: targets on scales 100x apart. Raw MSE neglects the small one;
    "balanced" target weights rescue it; standardisation learns both."""
    (X, y), (Xt, yt) = boxes
    centre, scale = y.mean(axis=0), np.array([1.0, 0.01])
    y, yt = (y - centre) * scale, (yt - centre) * scale

    def r2(**params):
        reg = CNNRegressor(random_state=0, **TINY, **params).fit(X, y)
        return r2_score(yt, reg.predict(Xt), multioutput="raw_values")

    assert np.all(r2() > 0.9)
    assert r2(standardize_target=False)[1] < 0.0
    assert r2(standardize_target=False, target_weight="balanced")[1] > 0.8


# ------------------------------------------------------------ sample weights


def test_weight_scale_changes_nothing_and_1e_minus_100_trains(boxes):
    """Story 1: probabilities from 1 down to 1e-100 as weights."""
    (X, y), (Xt, _) = boxes
    w = 10.0 ** -np.random.default_rng(0).uniform(0, 100, len(y))
    kw = dict(random_state=0, **{**TINY, "max_epochs": 3})
    with pytest.warns(UserWarning, match="effective sample size"):
        a = CNNRegressor(**kw).fit(X, y, sample_weight=w)
    with pytest.warns(UserWarning, match="effective sample size"):
        b = CNNRegressor(**kw).fit(X, y, sample_weight=w * 1e-200)
    pa, pb = a.predict(Xt), b.predict(Xt)
    assert np.all(np.isfinite(pa))
    assert all(np.isfinite(h["train_loss"]) for h in a.history)
    # Identical up to float64 rounding: w * 1e-200 is itself rounded, so the
    # normalised weights may differ in the last bit.
    assert_allclose(pa, pb, rtol=1e-6, atol=1e-9)
    assert_allclose(a.target_scale_, b.target_scale_, rtol=1e-12)


def test_ess_warning_threshold(boxes):
    (X, y), _ = boxes
    n = len(y)
    kw = dict(random_state=0, max_epochs=1)
    # ESS = (sum w)^2 / sum w^2 = k for k equal weights and the rest ~0
    k_low = int(ESS_WARN_FRACTION * n) - 1  # 3 of 400 -> below 1 %
    w = np.full(n, 1e-12)
    w[:k_low] = 1.0
    with pytest.warns(UserWarning, match=r"below 1% of the 400 weighted samples"):
        CNNRegressor(**kw).fit(X, y, sample_weight=w)
    w[: 2 * k_low + 4] = 1.0  # 10 of 400: 2.5 %, no warning
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*effective sample size.*")
        CNNRegressor(**kw).fit(X, y, sample_weight=w)


def test_importance_weights_ignore_corrupted_samples(boxes):
    """Half the training labels come from a miscalibrated sensor (shifted by
    4 px); their importance weight is ~0. The weighted model must be clearly
    better on clean test data."""
    (X, y), (Xt, yt) = boxes
    rng = np.random.default_rng(0)
    bad = rng.random(len(y)) < 0.5
    y_seen = y.copy()
    y_seen[bad] += 4.0
    w = np.where(bad, 1e-60, rng.uniform(0.5, 1.0, len(y)))
    kw = dict(random_state=0, **TINY)
    weighted = CNNRegressor(**kw).fit(X, y_seen, sample_weight=w)
    plain = CNNRegressor(**kw).fit(X, y_seen)
    mse_w = np.mean((weighted.predict(Xt) - yt) ** 2)
    mse_u = np.mean((plain.predict(Xt) - yt) ** 2)
    # unweighted is off by ~2 px per coordinate (MSE ~4); weighted is not
    assert mse_u > 3.0
    assert mse_w < 0.25 * mse_u


def test_zero_weight_is_leaving_the_sample_out(boxes):
    (X, y), (Xt, _) = boxes
    w = np.ones(len(y))
    w[::3] = 0.0
    kw = dict(random_state=0, batch_size=-1, max_epochs=5, module__channels=(4,),
              module__hidden_units=8)
    a = CNNRegressor(**kw).fit(X, y, sample_weight=w)
    b = CNNRegressor(**kw).fit(X[w > 0], y[w > 0])
    assert_allclose(a.target_mean_, b.target_mean_)
    assert_allclose(a.predict(Xt), b.predict(Xt), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("criterion", ["mse", "l1", "huber"])
@pytest.mark.parametrize("target_weight", [None, [2.0, 1.0]])
def test_integer_weight_equals_repeating_the_sample_for_every_loss(
        boxes, criterion, target_weight):
    (X, y), (Xt, _) = boxes
    X, y = X[:120], y[:120]
    k = np.random.default_rng(4).integers(0, 4, len(y))
    kw = dict(random_state=0, batch_size=-1, max_epochs=5, module__channels=(4,),
              module__hidden_units=8, criterion=criterion, target_weight=target_weight)
    a = CNNRegressor(**kw).fit(X, y, sample_weight=k)
    b = CNNRegressor(**kw).fit(np.repeat(X, k, axis=0), np.repeat(y, k, axis=0))
    assert_allclose(a.target_mean_, b.target_mean_, rtol=1e-12)
    assert_allclose(a.target_scale_, b.target_scale_, rtol=1e-12)
    assert_allclose(a.predict(Xt), b.predict(Xt), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("unit", [1e-20, 1e-8, 1e8, 1e100, 1e200])
def test_targets_in_any_unit_train_like_sensible_units(boxes, unit):
    (X, y), (Xt, yt) = boxes
    kw = dict(random_state=0, **{**TINY, "max_epochs": 3})
    base = fit_quiet(CNNRegressor(**kw), X, y)
    scaled = fit_quiet(CNNRegressor(**kw), X, y * unit)
    assert scaled.score(Xt, yt * unit) == pytest.approx(base.score(Xt, yt), abs=1e-3)
    assert_allclose(scaled.predict(Xt) / unit, base.predict(Xt), rtol=1e-5, atol=1e-6)
    assert_allclose(scaled.target_scale_ / unit, base.target_scale_, rtol=1e-10)


def test_tiny_spread_around_a_large_mean_is_not_constant(boxes):
    (X, y), _ = boxes
    # Relative to its magnitude the spread is far above rounding: learnable.
    reg = CNNRegressor(max_epochs=0).fit(X, 1e5 + y * 1e-3)
    assert np.all(reg.target_scale_ != 1.0)
    flat = CNNRegressor(max_epochs=0).fit(X, np.full(len(y), 1e-30))
    assert flat.target_scale_[0] == 1.0 and flat.target_mean_[0] == 1e-30


def test_unrepresentable_raw_targets_are_refused(boxes):
    (X, y), _ = boxes
    with pytest.raises(ValueError, match=r"y has values .* cannot output in float32 "
                                         r"with standardize_target=False"):
        CNNRegressor(standardize_target=False, max_epochs=1).fit(X, y * 1e200)
    with pytest.raises(ValueError, match="standardize_target=False"):
        CNNRegressor(standardize_target=False, max_epochs=1).fit(X, (y + 1) * 1e-40)


def test_continuing_with_another_number_of_targets_is_refused(boxes):
    (X, y), _ = boxes
    reg = CNNRegressor(warm_start=True, max_epochs=1, module__channels=(4,)).fit(X, y)
    with pytest.raises(ValueError, match=r"y has 1 target\(s\), but the network being "
                                         r"trained further has 2 output\(s\)"):
        reg.fit(X, y[:, 0])
    with pytest.raises(ValueError, match="trained further has 2"):
        reg.partial_fit(X, np.c_[y, y])


def test_caller_arrays_are_not_modified(boxes):
    (X, y), _ = boxes
    X0, y0 = X.copy(), y.copy()
    w = np.linspace(1e-100, 1, len(y))
    w0 = w.copy()
    tw = np.array([2.0, 1.0])
    CNNRegressor(target_weight=tw, max_epochs=1, random_state=0).fit(
        X, y, sample_weight=w
    )
    assert_array_equal(X, X0)
    assert_array_equal(y, y0)
    assert_array_equal(w, w0)
    assert_array_equal(tw, [2.0, 1.0])


# ------------------------------------------------------------ collapse check


def test_collapse_warning_on_uninformative_inputs():
    rng = np.random.default_rng(0)
    X = np.full((200, 1, 8, 8), 0.5, dtype=np.float32)  # every image the same
    y = rng.normal(size=(200, 2))
    with pytest.warns(PredictionCollapseWarning, match="predicts about the mean"):
        CNNRegressor(random_state=0, **{**TINY, "max_epochs": 2}).fit(X, y)


def test_collapse_warning_when_targets_are_unrelated_to_images(boxes):
    """Same images and settings as the learnable task below, but random y."""
    (X, _), _ = boxes
    y = np.random.default_rng(0).normal(size=(len(X), 2))
    with pytest.warns(PredictionCollapseWarning, match="Things to try: another learning"):
        CNNRegressor(random_state=0, **TINY).fit(X, y)


def test_collapse_warning_names_the_likely_causes(boxes):
    (X, y), _ = boxes
    rng = np.random.default_rng(0)
    X = X.astype(np.float32)  # 0..255, not scaled
    with pytest.warns(PredictionCollapseWarning) as record:
        CNNRegressor(standardize_target=False, lr=1e-2, random_state=0,
                     module__channels=(4,), max_epochs=2).fit(X, rng.normal(size=400))
    message = str(record[0].message)
    assert "scale the inputs, which reach 255" in message
    assert "standardize_target=True" in message
    assert "lr=0.01" in message and "max_epochs=2" in message


def test_diverged_training_warns(boxes):
    (X, y), _ = boxes
    reg = CNNRegressor(optimizer=torch.optim.SGD, lr=1e3, standardize_target=False,
                       max_epochs=2, random_state=0)
    with pytest.warns(UserWarning, match="not finite: training diverged"):
        reg.fit(X.astype(np.float32), y * 1e6)


def test_no_collapse_warning_on_learnable_task(boxes):
    (X, y), _ = boxes
    with warnings.catch_warnings():
        warnings.simplefilter("error", PredictionCollapseWarning)
        CNNRegressor(random_state=0, **TINY).fit(X, y)


def test_collapse_threshold_is_documented():
    assert COLLAPSE_STD_RATIO == 0.1
    assert "10 %" in CNNRegressor.__doc__


# ---------------------------------------------------------- custom criteria


def test_torch_loss_instance_gets_sample_and_target_weights(boxes):
    (X, y), (Xt, _) = boxes
    w = np.random.default_rng(0).random(len(y))
    kw = dict(random_state=0, target_weight=[2.0, 1.0], **{**TINY, "max_epochs": 2})
    crit = torch.nn.MSELoss()
    ours = CNNRegressor(**kw).fit(X, y, sample_weight=w)
    theirs = CNNRegressor(criterion=crit, **kw).fit(X, y, sample_weight=w)
    assert crit.reduction == "mean"  # the user's object is not modified
    assert_allclose(theirs.predict(Xt), ours.predict(Xt), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("criterion", ["l1", "huber"])
def test_named_robust_criteria_train(criterion, boxes):
    (X, y), (Xt, yt) = boxes
    reg = CNNRegressor(criterion=criterion, random_state=0, **TINY).fit(X, y)
    assert reg.score(Xt, yt) > 0.8


def test_target_weight_given_twice_is_refused(boxes):
    (X, y), _ = boxes
    reg = CNNRegressor(target_weight=[1.0, 2.0], criterion__target_weight=[1.0, 1.0],
                       max_epochs=1)
    with pytest.raises(ValueError, match="target weights would be applied twice"):
        reg.fit(X, y)


def test_module_output_shape_is_checked(boxes, linear_module):
    (X, y), _ = boxes
    with pytest.raises(ValueError, match=r"outputs of shape \(32, 3\).*\(32, 2\)"):
        CNNRegressor(linear_module, module__n_features=144, module__n_outputs=3,
                     head=None, max_epochs=1, batch_size=32).fit(X, y)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("y_fn", "match"),
    [
        (lambda y: np.where(np.arange(len(y))[:, None] == 3, np.nan, y),
         "contains NaN or infinity"),
        (lambda y: np.where(np.arange(len(y))[:, None] == 3, np.inf, y),
         "contains NaN or infinity"),
        (lambda y: y[:, :, None], r"3-D y of shape \(400, 2, 1\)"),
        (lambda y: y[:-1], "inconsistent numbers of samples"),
        (lambda y: np.array(["a"] * len(y)), "must hold numbers for regression"),
        (lambda y: np.empty((len(y), 0)), "0 targets"),
    ],
)
def test_bad_targets(y_fn, match, boxes):
    (X, y), _ = boxes
    with pytest.raises(ValueError, match=match):
        CNNRegressor(max_epochs=1).fit(X, y_fn(y))


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"target_weight": [1.0, 2.0, 3.0]}, ValueError,
         r"target_weight has 3 entries, but y has 2 target\(s\)"),
        ({"target_weight": [1.0, -2.0]}, ValueError, "finite non-negative"),
        ({"target_weight": [0.0, 0.0]}, ValueError, "weight of 0"),
        ({"target_weight": [1.0, np.nan]}, ValueError, "finite non-negative"),
        ({"target_weight": "equal"}, ValueError, "got the string 'equal'"),
        ({"target_weight": 2.0}, ValueError, "1-D array of one non-negative"),
        ({"target_weight": [[1.0], [1.0, 2.0]]}, ValueError, "1-D array of one"),
        ({"standardize_target": "yes"}, TypeError, "standardize_target must be a bool"),
        ({"criterion": "rmse"}, ValueError, "criterion='rmse' is not a known loss"),
        ({"lr": -1.0}, ValueError, "lr must be a positive number"),
        ({"input_shape": (1, 5, 5)}, ValueError, "does not match input_shape"),
    ],
)
def test_bad_parameters(params, error, match, boxes):
    (X, y), _ = boxes
    with pytest.raises(error, match=match):
        CNNRegressor(max_epochs=1, **params).fit(X, y)


@pytest.mark.parametrize(
    ("kind", "error", "match"),
    [
        ("negative", ValueError, "sample_weight contains negative values"),
        ("nan", ValueError, "sample_weight contains NaN"),
        ("shape", ValueError, r"sample_weight.shape == \(399,\)"),
        ("zeros", ValueError, "only zero weights"),
        ("X_nan", ValueError, "Input X contains NaN"),
        ("X_4d_1", ValueError, "Expected X with 2 dimensions"),
        ("X_sparse", TypeError, "Sparse data"),
    ],
)
def test_bad_inputs_from_the_core(kind, error, match, boxes):
    (X, y), _ = boxes
    w = np.ones(len(y))
    X = X.astype(np.float32)
    if kind == "negative":
        w[0] = -1
    elif kind == "nan":
        w[0] = np.nan
    elif kind == "shape":
        w = w[:-1]
    elif kind == "zeros":
        w[:] = 0
    elif kind == "X_nan":
        X[0, 0, 0] = np.nan
    elif kind == "X_4d_1":
        X = X.reshape(len(y), 1, 1, 12, 12)
    elif kind == "X_sparse":
        import scipy.sparse

        X = scipy.sparse.csr_matrix(X.reshape(len(y), -1))
    with pytest.raises(error, match=match):
        CNNRegressor(max_epochs=1).fit(X, y, sample_weight=w)


def test_predict_checks_shape_and_fitted(boxes):
    (X, y), _ = boxes
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        CNNRegressor().predict(X)
    reg = CNNRegressor(max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="fitted on images of shape"):
        reg.predict(X[:, :10, :10])
    assert not hasattr(reg, "predict_proba")


# ------------------------------------------------------ scikit-learn support


def test_clone_pickle_and_grid_search(boxes):
    (X, y), (Xt, yt) = boxes
    reg = CNNRegressor(random_state=0, target_weight="balanced",
                       **{**TINY, "max_epochs": 2}).fit(X, y)
    again = pickle.loads(pickle.dumps(reg))
    assert_array_equal(again.predict(Xt), reg.predict(Xt))
    assert_array_equal(again.target_mean_, reg.target_mean_)
    fresh = clone(reg)
    assert not hasattr(fresh, "target_mean_")
    assert fresh.get_params()["target_weight"] == "balanced"
    search = GridSearchCV(
        CNNRegressor(random_state=0, **{**TINY, "max_epochs": 2}),
        {"criterion": ["mse", "huber"]}, cv=2,
    ).fit(X, y, sample_weight=np.ones(len(y)))
    assert search.best_params_["criterion"] in ("mse", "huber")


@pytest.mark.cuda
def test_cuda_matches_contract(boxes):
    (X, y), (Xt, yt) = boxes
    w = 10.0 ** -np.random.default_rng(0).uniform(0, 3, len(y))
    reg = CNNRegressor(device="cuda", random_state=0, **TINY)
    reg.fit(X, y, sample_weight=w)
    assert reg.module_.head[-1].weight.device.type == "cuda"
    assert reg.score(Xt, yt) > 0.8



# -- Balanced MSE -------------------------------------------------------------------


def _long_tail(n=240, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.lognormal(0, 0.8, n)
    X = (y[:, None, None, None] / 8 * rng.uniform(0.5, 1.5, (n, 1, 6, 6))).astype(
        np.float32)
    return X, y


@pytest.mark.parametrize("prior", ["bni", "gai"])
def test_balanced_mse_prior_is_the_weighted_training_split(prior):
    X, y = _long_tail()
    k = np.random.default_rng(1).integers(0, 3, len(y))
    kw = dict(criterion="balanced_mse", criterion__prior=prior, batch_size=-1,
              max_epochs=4, random_state=0)
    a = CNNRegressor(**kw).fit(X, y, sample_weight=k)
    b = CNNRegressor(**kw).fit(np.repeat(X, k, axis=0), np.repeat(y, k))
    # the prior the loss fitted is the same: the standardised targets,
    # weighted as served (zero weights: left out)
    for name in ("prior_means", "prior_variances", "prior_log_weights"):
        torch.testing.assert_close(getattr(a.criterion_, name),
                                   getattr(b.criterion_, name), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.predict(X), b.predict(X), rtol=1e-4, atol=1e-4)


def test_balanced_mse_with_a_flat_prior_trains_as_mse():
    # A prior far wider than the targets: the log-partition term is constant
    # near the predictions, and the gradient is the MSE's.
    X, y = _long_tail()
    mse = CNNRegressor(batch_size=-1, max_epochs=3, random_state=0).fit(X, y)
    flat = CNNRegressor(criterion="balanced_mse", criterion__prior="gai",
                        criterion__n_components=1, criterion__learn_sigma=False,
                        criterion__noise_sigma=1e-3, batch_size=-1, max_epochs=3,
                        random_state=0)
    flat.fit(X, y)
    # one wide component: its variance is the targets', sigma tiny against it
    np.testing.assert_allclose(flat.predict(X), mse.predict(X), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("params, match", [
    ({"criterion__prior": "kde"}, "prior must be one of"),
    ({"criterion__noise_sigma": 0.0}, "noise_sigma"),
    ({"criterion__noise_sigma": -1.0}, "noise_sigma"),
])
def test_balanced_mse_bad_settings_are_named(params, match):
    X, y = _long_tail(60)
    with pytest.raises(ValueError, match=match):
        CNNRegressor(criterion="balanced_mse", max_epochs=1, **params).fit(X, y)


def test_balanced_mse_refuses_targets_with_one_value():
    X, _ = _long_tail(60)
    y = np.ones((60, 2))
    y[:, 1] = np.arange(60)
    with pytest.raises(ValueError, match="one distinct value|distinct"):
        CNNRegressor(criterion="balanced_mse", max_epochs=1).fit(X, y)
