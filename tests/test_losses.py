import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from skweight.losses import (
    AsymmetricLoss,
    BalancedMSELoss,
    BinaryCrossEntropyLoss,
    BinaryLogitAdjustedLoss,
    CrossEntropyLoss,
    DiceCELoss,
    DiceLoss,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    SigmoidFocalLoss,
    TverskyLoss,
)

GAMMAS = [0.0, 0.5, 1.0, 2.0, 5.0]
MULTICLASS = ["ce", "focal", "dice", "tversky", "dice_ce"]
ELEMENTWISE = ["ce", "focal"]
OVERLAP = ["dice", "tversky"]


def make(name, class_weight=None, **kwargs):
    """Build a class-index loss; `class_weight` is FocalLoss's `alpha`."""
    if name == "focal":
        return FocalLoss(alpha=class_weight, **kwargs)
    if name == "tversky":
        # away from 0.5/0.5 so Tversky is not just Dice in these tests
        kwargs = {"alpha": 0.3, "beta": 0.7, **kwargs}
    cls = {
        "ce": CrossEntropyLoss,
        "dice": DiceLoss,
        "tversky": TverskyLoss,
        "dice_ce": DiceCELoss,
    }[name]
    return cls(class_weight=class_weight, **kwargs)


def data(shape=(3, 4, 5, 6), seed=0, scale=2.0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)
    target_shape = (shape[0],) + tuple(shape[2:])
    t = torch.randint(0, shape[1], target_shape, generator=gen)
    return x, t


def grads_finite(loss_fn, x, *args, **kwargs):
    x = x.clone().requires_grad_(True)
    loss = loss_fn(x, *args, **kwargs)
    loss.sum().backward()
    return bool(torch.isfinite(loss).all()) and bool(torch.isfinite(x.grad).all())


# ---------------------------------------------------------------- cross-entropy


@pytest.mark.parametrize("shape", [(8, 5), (2, 3, 4, 5)])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_ce_matches_torch(shape, eps):
    x, t = data(shape)
    expected = F.cross_entropy(x, t, reduction="none", label_smoothing=eps)
    got = CrossEntropyLoss(label_smoothing=eps, reduction="none")(x, t)
    assert got.shape == t.shape
    assert_close(got, expected)
    assert_close(CrossEntropyLoss(label_smoothing=eps)(x, t), expected.mean())
    assert_close(
        CrossEntropyLoss(label_smoothing=eps, reduction="sum")(x, t), expected.sum()
    )


def test_ce_ignore_index_matches_torch():
    x, t = data((2, 3, 4, 4))
    t[0, :2] = -100
    expected = F.cross_entropy(x, t, reduction="none", label_smoothing=0.2)
    loss = CrossEntropyLoss(ignore_index=-100, label_smoothing=0.2, reduction="none")
    assert_close(loss(x, t), expected)
    # torch's mean also divides by the number of non-ignored elements
    mean = CrossEntropyLoss(ignore_index=-100, label_smoothing=0.2)(x, t)
    assert_close(mean, F.cross_entropy(x, t, ignore_index=-100, label_smoothing=0.2))


def test_ce_mean_is_not_normalised_by_weights():
    x, t = data((6, 3))
    c = torch.tensor([1.0, 4.0, 0.5])
    per_element = F.cross_entropy(x, t, reduction="none") * c[t]
    assert_close(CrossEntropyLoss(class_weight=c)(x, t), per_element.sum() / 6)
    weighted_torch = F.cross_entropy(x, t, weight=c)
    assert not torch.allclose(CrossEntropyLoss(class_weight=c)(x, t), weighted_torch)


# ------------------------------------------------------------------ focal loss


@pytest.mark.parametrize("shape", [(10, 4), (2, 3, 5, 4)])
def test_focal_gamma0_equals_cross_entropy(shape):
    x, t = data(shape)
    none = FocalLoss(gamma=0.0, reduction="none")(x, t)
    assert_close(none, F.cross_entropy(x, t, reduction="none"))
    assert_close(FocalLoss(gamma=0.0)(x, t), F.cross_entropy(x, t))


@pytest.mark.parametrize("gamma", GAMMAS)
def test_focal_matches_formula(gamma):
    x, t = data((2, 3, 4, 4), dtype=torch.float64)
    p = torch.softmax(x, 1).gather(1, t.unsqueeze(1)).squeeze(1)
    expected = -((1 - p) ** gamma) * torch.log(p)
    got = FocalLoss(gamma=gamma, reduction="none")(x, t)
    assert got.dtype == torch.float64
    assert_close(got, expected)


def test_focal_downweights_easy_examples():
    x = torch.tensor([[3.0, 0.0], [0.0, 1.0]])  # easy (p=0.95), hard (p=0.27)
    t = torch.tensor([0, 0])
    ce = CrossEntropyLoss(reduction="none")(x, t)
    focal = FocalLoss(gamma=2.0, reduction="none")(x, t)
    assert focal[0] / focal[1] < ce[0] / ce[1]
    p = torch.softmax(x, 1)[:, 0]
    expected_ratio = ce[0] / ce[1] * ((1 - p[0]) / (1 - p[1])) ** 2
    assert_close(focal[0] / focal[1], expected_ratio)
    assert (focal[0] / focal[1]).item() < 0.01 * (ce[0] / ce[1]).item()


def test_focal_alpha_accepts_array_likes():
    x, t = data((7, 3))
    expected = FocalLoss(alpha=torch.tensor([0.2, 1.0, 3.0]))(x, t)
    for alpha in ([0.2, 1.0, 3.0], (0.2, 1.0, 3.0), np.array([0.2, 1.0, 3.0])):
        assert_close(FocalLoss(alpha=alpha)(x, t), expected)


@pytest.mark.parametrize("alpha", [0.25, np.float64(0.25), torch.tensor(0.25)])
def test_focal_scalar_alpha_raises(alpha):
    with pytest.raises(ValueError, match="alpha must be a 1-D sequence.*per class"):
        FocalLoss(alpha=alpha)


def test_focal_alpha_wrong_length_raises():
    x, t = data((4, 3))
    with pytest.raises(ValueError, match=r"alpha has 2 entries but input has K=3"):
        FocalLoss(alpha=[1.0, 2.0])(x, t)


@pytest.mark.parametrize("gamma", [-0.5, float("nan"), float("inf"), "2", True])
def test_focal_bad_gamma_raises(gamma):
    with pytest.raises(ValueError, match="gamma must be a finite real number >= 0"):
        FocalLoss(gamma=gamma)
    with pytest.raises(ValueError, match="gamma must be a finite real number >= 0"):
        SigmoidFocalLoss(gamma=gamma)


def test_focal_single_class_raises():
    with pytest.raises(ValueError, match="at least 2 classes"):
        FocalLoss()(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long))


# ---------------------------------------------------------- sigmoid focal loss


@pytest.mark.parametrize("shape", [(9,), (2, 3, 4)])
@pytest.mark.parametrize("target_dtype", [torch.float32, torch.long, torch.bool])
def test_sigmoid_focal_gamma0_equals_bce(shape, target_dtype):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=gen) * 3
    y = torch.randint(0, 2, shape, generator=gen)
    loss = SigmoidFocalLoss(gamma=0.0, alpha=None, reduction="none")
    expected = F.binary_cross_entropy_with_logits(x, y.float(), reduction="none")
    assert_close(loss(x, y.to(target_dtype)), expected)
    mean = SigmoidFocalLoss(gamma=0.0, alpha=None)(x, y.to(target_dtype))
    assert_close(mean, expected.mean())


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("alpha", [None, 0.25, 0.9])
def test_sigmoid_focal_matches_formula(gamma, alpha):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(4, 5, generator=gen, dtype=torch.float64) * 3
    y = torch.randint(0, 2, (4, 5), generator=gen).double()
    p = torch.sigmoid(x)
    p_t = torch.where(y == 1, p, 1 - p)
    expected = -((1 - p_t) ** gamma) * torch.log(p_t)
    if alpha is not None:
        expected = expected * torch.where(y == 1, alpha, 1 - alpha)
    got = SigmoidFocalLoss(gamma=gamma, alpha=alpha, reduction="none")(x, y)
    assert_close(got, expected)


def test_sigmoid_focal_sample_weight():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3, 2, 4, generator=gen)
    y = torch.randint(0, 2, (3, 2, 4), generator=gen)
    sw = torch.tensor([0.5, 2.0, 0.0])
    none = SigmoidFocalLoss(reduction="none")(x, y)
    got = SigmoidFocalLoss(reduction="sum")(x, y, sample_weight=sw)
    assert_close(got, (none * sw[:, None, None]).sum())
    full = sw[:, None, None].expand(3, 2, 4)
    assert_close(SigmoidFocalLoss()(x, y, sample_weight=full), got / y.numel())


@pytest.mark.parametrize("bad", [2, -1, 0.5])
def test_sigmoid_focal_non_binary_target_raises(bad):
    y = torch.tensor([0.0, 1.0, bad])
    with pytest.raises(ValueError, match="only 0 and 1"):
        SigmoidFocalLoss()(torch.zeros(3), y)


def test_sigmoid_focal_bad_params_and_shapes():
    with pytest.raises(ValueError, match=r"alpha must be a finite real number in \[0"):
        SigmoidFocalLoss(alpha=1.5)
    with pytest.raises(ValueError, match=r"target shape \(3,\) does not match input"):
        SigmoidFocalLoss()(torch.zeros(3, 1), torch.zeros(3))


# ----------------------------------------------------------------- Dice loss

# 1 image of 2x2 pixels, 2 classes, probabilities of class 1 (row-major):
# 0.75, 0.25, 0.5, 0.75 from logit differences log 3, -log 3, 0, log 3.
L3 = math.log(3.0)
HAND_X = torch.tensor([[[[0.0, 0.0], [0.0, 0.0]], [[L3, -L3], [0.0, L3]]]])
HAND_T = torch.tensor([[[1, 0], [1, 1]]])


def test_dice_hand_computed():
    # class 1: TP = .75 + .5 + .75 = 2, sum p = 2.25, sum g = 3 -> D1 = 4 / 5.25
    # class 0: TP = .75, sum p = 1.75, sum g = 1 -> D0 = 1.5 / 2.75
    d1, d0 = 4 / 5.25, 1.5 / 2.75
    assert_close(DiceLoss(smooth=0.0)(HAND_X, HAND_T).item(), 80 / 231)
    assert_close(DiceLoss(smooth=0.0)(HAND_X, HAND_T).item(), 1 - (d0 + d1) / 2)
    none = DiceLoss(smooth=0.0, reduction="none")(HAND_X, HAND_T)
    assert_close(none, torch.tensor([1 - d0, 1 - d1]))
    assert_close(DiceLoss(smooth=0.0, reduction="sum")(HAND_X, HAND_T).item(), 2 - d0 - d1)
    no_bg = DiceLoss(smooth=0.0, include_background=False)(HAND_X, HAND_T)
    assert_close(no_bg.item(), 5 / 21)
    # squared: sum p1^2 = 1.4375, sum p0^2 = 0.9375
    squared = DiceLoss(smooth=0.0, squared=True)(HAND_X, HAND_T)
    assert_close(squared.item(), 1 - (4 / 4.4375 + 1.5 / 1.9375) / 2)
    s = 0.1
    smoothed = DiceLoss(smooth=s)(HAND_X, HAND_T)
    assert_close(smoothed.item(), 1 - ((4 + s) / (5.25 + s) + (1.5 + s) / (2.75 + s)) / 2)


def test_dice_hand_computed_weighted():
    # pixel weights 1, 2, 0, 1: class 1 TP = 1.5, sum p = 2, sum g = 2;
    # class 0 TP = 1.5, sum p = 2, sum g = 2 -> D = 3/4 for both
    w = torch.tensor([[[1.0, 2.0], [0.0, 1.0]]])
    got = DiceLoss(smooth=0.0)(HAND_X, HAND_T, sample_weight=w)
    assert_close(got.item(), 0.25)


def test_tversky_hand_computed():
    # class 1: TP = 2, FP = .25, FN = 1; class 0: TP = .75, FP = 1, FN = .25
    t1 = 2 / (2 + 0.3 * 0.25 + 0.7 * 1.0)
    t0 = 0.75 / (0.75 + 0.3 * 1.0 + 0.7 * 0.25)
    got = TverskyLoss(alpha=0.3, beta=0.7, smooth=0.0)(HAND_X, HAND_T)
    assert_close(got.item(), 1 - (t0 + t1) / 2)


def set_dice(pred, target, n_classes):
    scores = []
    for k in range(n_classes):
        a, b = pred == k, target == k
        size = int(a.sum() + b.sum())
        scores.append(1.0 if size == 0 else 2 * int((a & b).sum()) / size)
    return torch.tensor(scores)


@pytest.mark.parametrize("big", [1e3, 1e4])
def test_dice_hard_predictions_equal_set_dice(big):
    gen = torch.Generator().manual_seed(4)
    pred = torch.randint(0, 3, (2, 6, 6), generator=gen)
    target = torch.randint(0, 3, (2, 6, 6), generator=gen)
    x = F.one_hot(pred, 3).permute(0, 3, 1, 2).float() * big
    expected = set_dice(pred, target, 3)
    assert_close(DiceLoss(smooth=0.0)(x, target), 1 - expected.mean())
    assert_close(DiceLoss(smooth=0.0, squared=True)(x, target), 1 - expected.mean())
    per_image = torch.stack([set_dice(pred[i], target[i], 3) for i in range(2)])
    got = DiceLoss(per_image=True, reduction="none")(x, target)
    assert got.shape == (2, 3)
    assert_close(got, 1 - per_image, atol=1e-5, rtol=1e-5)


def test_dice_2d_input():
    x, t = data((12, 3))
    # (N, K): the samples are the pixels of one image, or one-pixel images
    as_image = x.T.unsqueeze(0)
    assert_close(DiceLoss()(x, t), DiceLoss()(as_image, t.unsqueeze(0)))
    got = DiceLoss(per_image=True, reduction="none")(x, t)
    assert got.shape == (12, 3)
    assert_close(got, DiceLoss(per_image=True, reduction="none")(x[..., None], t[:, None]))


def test_tversky_half_half_equals_dice():
    x, t = data()
    dice = DiceLoss(smooth=0.0)(x, t)
    assert_close(TverskyLoss(alpha=0.5, beta=0.5, smooth=0.0)(x, t), dice)
    # with smoothing s, T(0.5, 0.5) equals Dice with smoothing 2 s
    for per_image in (False, True):
        kw = {"per_image": per_image, "reduction": "none"}
        assert_close(
            TverskyLoss(alpha=0.5, beta=0.5, smooth=0.3, **kw)(x, t),
            DiceLoss(smooth=0.6, **kw)(x, t),
        )
    assert_close(TverskyLoss()(x, t), DiceLoss()(x, t), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", OVERLAP)
def test_overlap_none_shapes(name):
    x, t = data((3, 4, 5, 6))
    assert make(name, reduction="none")(x, t).shape == (4,)
    assert make(name, reduction="none", include_background=False)(x, t).shape == (3,)
    per_image = make(name, reduction="none", per_image=True)(x, t)
    assert per_image.shape == (3, 4)
    assert_close(make(name, per_image=True)(x, t), per_image.mean())
    assert_close(make(name, per_image=True, reduction="sum")(x, t), per_image.sum())


def test_dice_ce_is_weighted_sum():
    x, t = data()
    t[0, 0] = 255
    c = [1.0, 2.0, 0.5, 3.0]
    sw = torch.tensor([1.0, 0.0, 2.0])
    common = {"class_weight": c, "ignore_index": 255}
    for reduction in ("mean", "sum"):
        dice = DiceLoss(squared=True, reduction=reduction, **common)(x, t, sw)
        ce = CrossEntropyLoss(label_smoothing=0.1, reduction=reduction, **common)(x, t, sw)
        loss = DiceCELoss(
            lambda_dice=0.3,
            lambda_ce=2.0,
            squared=True,
            label_smoothing=0.1,
            reduction=reduction,
            **common,
        )
        assert_close(loss(x, t, sw), 0.3 * dice + 2.0 * ce)


def test_dice_ce_reduction_none_raises():
    with pytest.raises(ValueError, match="reduction='none' is not defined"):
        DiceCELoss(reduction="none")


# ------------------------------------------------------- weighting conventions


@pytest.mark.parametrize("name", MULTICLASS)
@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 5, 6)])
def test_class_weight_equals_sample_weight(name, shape):
    x, t = data(shape)
    c = torch.tensor([0.5, 2.0, 1.0, 3.0])
    reduction = "sum" if name == "dice_ce" else "none"
    by_class = make(name, class_weight=c, reduction=reduction)(x, t)
    by_sample = make(name, reduction=reduction)(x, t, sample_weight=c[t])
    assert_close(by_class, by_sample)
    # both given: they multiply
    sw = torch.tensor([1.5, 0.0, 2.0, 1.0, 1.0, 0.5])[: shape[0]]
    sw_full = sw.reshape((-1,) + (1,) * (t.ndim - 1)) * c[t]
    both = make(name, class_weight=c, reduction=reduction)(x, t, sample_weight=sw)
    assert_close(both, make(name, reduction=reduction)(x, t, sample_weight=sw_full))


@pytest.mark.parametrize("name", MULTICLASS)
def test_class_weight_array_likes_and_buffer(name):
    x, t = data((2, 3, 4, 4))
    kw = {"reduction": "sum"}
    expected = make(name, class_weight=torch.tensor([1.0, 2.0, 3.0]), **kw)(x, t)
    for c in ([1, 2, 3], (1.0, 2.0, 3.0), np.array([1.0, 2.0, 3.0])):
        loss = make(name, class_weight=c, **kw)
        buffer_name = "alpha" if name == "focal" else "class_weight"
        assert getattr(loss, buffer_name).dtype == torch.float32
        assert buffer_name in loss.state_dict()
        assert_close(loss(x, t), expected)
    loss64 = make(name, class_weight=[1, 2, 3], **kw).to(torch.float64)
    got = loss64(x.double(), t)
    assert got.dtype == torch.float64
    assert_close(got, expected.double(), rtol=1e-5, atol=1e-5)
    # float32 buffer with float64 input, float64 buffer with float32 input
    assert make(name, class_weight=[1, 2, 3], **kw)(x.double(), t).dtype == torch.float64
    assert loss64(x, t).dtype == torch.float32


@pytest.mark.parametrize("name", MULTICLASS)
@pytest.mark.parametrize("ignore_index", [-1, 255, 0])
def test_zero_weight_equals_ignore_index(name, ignore_index):
    x, t = data((3, 4, 5, 6))
    mask = torch.rand(t.shape, generator=torch.Generator().manual_seed(5)) < 0.3
    if ignore_index == 0:
        mask = t == 0  # ignoring a real class
    t_ignored = t.masked_fill(mask, ignore_index)
    weight = (~mask).float()
    # DiceCE "mean" is left out: its CE part divides by the non-ignored count
    reductions = ["sum", "none"]
    if name in OVERLAP:
        reductions = ["sum", "mean", "none"]
    elif name == "dice_ce":
        reductions = ["sum"]
    kw = {"per_image": True} if name in OVERLAP and ignore_index == 255 else {}
    for reduction in reductions:
        ignored = make(name, ignore_index=ignore_index, reduction=reduction, **kw)
        weighted = make(name, reduction=reduction, **kw)
        assert_close(ignored(x, t_ignored), weighted(x, t, sample_weight=weight))
    if name in ELEMENTWISE:
        none = make(name, ignore_index=ignore_index, reduction="none")(x, t_ignored)
        assert (none[mask] == 0).all()
        assert (none[~mask] > 0).all()


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_mean_is_sum_over_non_ignored_count(name):
    x, t = data((3, 4, 5, 6))
    t[:, :2] = -100
    sw = torch.tensor([0.5, 3.0, 1.0])
    c = [1.0, 0.2, 4.0, 1.0]
    total = make(name, class_weight=c, ignore_index=-100, reduction="sum")(x, t, sw)
    mean = make(name, class_weight=c, ignore_index=-100)(x, t, sw)
    n_non_ignored = int((t != -100).sum())
    assert n_non_ignored == 3 * 3 * 6
    assert_close(mean, total / n_non_ignored)


@pytest.mark.parametrize("name", MULTICLASS)
def test_all_ignored_is_zero_and_finite(name):
    x, _ = data((2, 3, 2, 2))
    t = torch.full((2, 2, 2), -1)
    x.requires_grad_(True)
    loss = make(name, ignore_index=-1)(x, t)
    loss.backward()
    assert torch.isfinite(x.grad).all()
    assert loss.item() == 0.0


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_scaling_weights_scales_elementwise_losses(name):
    x, t = data()
    sw = torch.rand(t.shape, generator=torch.Generator().manual_seed(6))
    for reduction in ("mean", "sum"):
        loss = make(name, reduction=reduction)
        assert_close(loss(x, t, 7.0 * sw), 7.0 * loss(x, t, sw))


@pytest.mark.parametrize("name", OVERLAP)
@pytest.mark.parametrize("per_image", [False, True])
def test_scaling_weights_leaves_overlap_losses_unchanged(name, per_image):
    x, t = data()
    sw = torch.rand(t.shape, generator=torch.Generator().manual_seed(7)) + 0.1
    exact = make(name, smooth=0.0, per_image=per_image)
    assert_close(exact(x, t, 7.0 * sw), exact(x, t, sw))
    assert_close(exact(x, t, sw.new_full((3,), 4.0)), exact(x, t))
    smoothed = make(name, per_image=per_image)
    assert_close(smoothed(x, t, 7.0 * sw), smoothed(x, t, sw), atol=1e-5, rtol=0)


# -------------------------------------------------------------- numerics


def extreme_logits(big, shape=(4, 3, 3, 3), seed=8):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(-1, 2, shape, generator=gen).float() * big
    # sure-right, sure-wrong and tied elements
    x[0, :, 0, 0] = torch.tensor([big, -big, -big])
    x[0, :, 0, 1] = torch.tensor([-big, big, -big])
    x[0, :, 0, 2] = 0.0
    t = torch.randint(0, shape[1], (shape[0],) + shape[2:], generator=gen)
    t[0, 0, 0] = 0
    t[0, 0, 1] = 0
    return x, t


@pytest.mark.parametrize("big", [1e3, 1e4])
@pytest.mark.parametrize("gamma", GAMMAS)
def test_focal_finite_for_extreme_logits(big, gamma):
    x, t = extreme_logits(big)
    sw = torch.rand(t.shape, generator=torch.Generator().manual_seed(9))
    assert grads_finite(FocalLoss(gamma=gamma), x, t, sw)
    assert grads_finite(FocalLoss(gamma=gamma, alpha=[1, 2, 3], reduction="none"), x, t)
    y = (t > 0).float()
    assert grads_finite(SigmoidFocalLoss(gamma=gamma), x[:, 0], y, sw)
    # p_t rounds to exactly 1 here, where (1 - p_t)**gamma has an infinite slope
    x_sure = torch.tensor([big, -big, 0.0])
    y_sure = torch.tensor([1.0, 0.0, 1.0])
    assert grads_finite(SigmoidFocalLoss(gamma=gamma, reduction="sum"), x_sure, y_sure)


@pytest.mark.parametrize("name", MULTICLASS)
@pytest.mark.parametrize("big", [1e3, 1e4])
@pytest.mark.parametrize("per_image", [False, True])
def test_finite_for_extreme_logits(name, big, per_image):
    x, t = extreme_logits(big)
    kw = {} if name in ELEMENTWISE else {"per_image": per_image}
    assert grads_finite(make(name, **kw), x, t)
    assert grads_finite(make(name, class_weight=[0.0, 1.0, 5.0], **kw), x, t)


@pytest.mark.parametrize("name", MULTICLASS)
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("include_background", [True, False])
def test_finite_with_absent_classes(name, per_image, include_background):
    x, _ = data((2, 4, 3, 3))
    t = torch.zeros(2, 3, 3, dtype=torch.long)
    t[0, 0, 0] = 2  # classes 1 and 3 absent from the batch
    kw = {}
    if name not in ELEMENTWISE:
        kw = {"per_image": per_image, "include_background": include_background}
    for scale in (1.0, 1e3):
        assert grads_finite(make(name, **kw), x * scale, t)


def test_dice_absent_class_has_index_one():
    x = torch.tensor([[[1e3, -1e3]], [[-1e3, 1e3]], [[-1e3, -1e3]]])  # (K=3, 1, 2)
    x = x.unsqueeze(0)
    t = torch.tensor([[[0, 1]]])
    none = DiceLoss(reduction="none")(x, t)
    assert_close(none, torch.zeros(3))  # class 2: absent everywhere, D = s / s


def grad_input(shape, seed=10):
    x, t = data(shape, seed=seed, scale=1.5, dtype=torch.float64)
    return x.requires_grad_(True), t


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_gradcheck_focal(gamma):
    x, t = grad_input((2, 3, 2, 2))
    sw = torch.rand(2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    loss = FocalLoss(gamma=gamma, alpha=[1.0, 2.0, 0.5])
    assert torch.autograd.gradcheck(lambda z: loss(z, t, sw), (x,))
    y = (t > 0).double()
    sig = SigmoidFocalLoss(gamma=gamma)
    assert torch.autograd.gradcheck(lambda z: sig(z, y), (x[:, 0],))


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (DiceLoss, {}),
        (DiceLoss, {"squared": True, "per_image": True, "include_background": False}),
        (TverskyLoss, {"alpha": 0.3, "beta": 0.7, "per_image": True}),
        (DiceCELoss, {"class_weight": [1.0, 2.0, 0.5], "label_smoothing": 0.1}),
        (CrossEntropyLoss, {"label_smoothing": 0.1}),
    ],
)
def test_gradcheck_class_index_losses(cls, kwargs):
    x, t = grad_input((2, 3, 2, 2))
    t[0, 0, 0] = -1
    loss = cls(ignore_index=-1, **kwargs)
    sw = torch.rand(
        t.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    assert torch.autograd.gradcheck(lambda z: loss(z, t, sw), (x,))


@pytest.mark.parametrize("name", MULTICLASS)
def test_low_precision_input_is_computed_in_float32(name):
    x, t = data((2, 3, 4, 4))
    x16 = x.bfloat16()
    expected = make(name)(x16.float(), t)
    got = make(name)(x16, t)
    assert got.dtype == torch.float32
    assert_close(got, expected)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = make(name)(x16, t)
    assert got.dtype == torch.float32
    assert_close(got, expected)


# -------------------------------------------------------------- validation


@pytest.mark.parametrize("name", MULTICLASS)
def test_sample_weight_wrong_shape_raises(name):
    x, t = data((3, 4, 5, 6))
    msg = (
        r"sample_weight.shape == \(3, 5\), expected \(3,\) \(one weight per sample\) "
        r"or \(3, 5, 6\) \(one weight per element\)"
    )
    with pytest.raises(ValueError, match=msg):
        make(name)(x, t, sample_weight=torch.ones(3, 5))
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(4,\)"):
        make(name)(x, t, sample_weight=torch.ones(4))


@pytest.mark.parametrize("name", MULTICLASS)
@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_sample_weight_bad_values_raise(name, bad):
    x, t = data((3, 4, 2, 2))
    sw = torch.tensor([1.0, bad, 1.0])
    with pytest.raises(ValueError, match="sample_weight must contain finite non-neg"):
        make(name)(x, t, sample_weight=sw)


def test_sigmoid_sample_weight_validation():
    x = torch.zeros(3, 4)
    y = torch.zeros(3, 4)
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(4,\), expected \(3,\)"):
        SigmoidFocalLoss()(x, y, sample_weight=torch.ones(4))
    with pytest.raises(ValueError, match="non-negative"):
        SigmoidFocalLoss()(x, y, sample_weight=-torch.ones(3))


@pytest.mark.parametrize("name", MULTICLASS)
def test_target_out_of_range_raises(name):
    x, t = data((3, 4, 2, 2))
    t[0, 0, 0] = 4
    t[1, 0, 0] = -3
    t[2, 0, 0] = -100
    with pytest.raises(ValueError, match=r"outside \[0, K=4\): -100, -3, 4\."):
        make(name)(x, t)
    msg = r"outside \[0, K=4\) and not ignore_index=-100: -3, 4\."
    with pytest.raises(ValueError, match=msg):
        make(name, ignore_index=-100)(x, t)


@pytest.mark.parametrize("name", MULTICLASS)
def test_mismatched_shapes_raise(name):
    x, t = data((3, 4, 5, 6))
    msg = r"target shape \(3, 5, 5\) does not match input shape \(3, 4, 5, 6\): "
    msg += r"expected target of shape \(3, 5, 6\)"
    with pytest.raises(ValueError, match=msg):
        make(name)(x, t[..., :5])
    with pytest.raises(ValueError, match=r"input must have shape \(N, K\)"):
        make(name)(x[:, 0, 0, 0], t[:, 0, 0])
    with pytest.raises(ValueError, match="target must hold integer class indices"):
        make(name)(x, t.float())
    with pytest.raises(ValueError, match="class_weight|alpha"):
        make(name, class_weight=[1.0, 2.0])(x, t)


@pytest.mark.parametrize(
    "cls", [CrossEntropyLoss, FocalLoss, SigmoidFocalLoss, DiceLoss, TverskyLoss]
)
@pytest.mark.parametrize("reduction", ["avg", "MEAN", None])
def test_bad_reduction_raises(cls, reduction):
    with pytest.raises(ValueError, match="reduction must be one of 'mean', 'sum'"):
        cls(reduction=reduction)
    with pytest.raises(ValueError, match="reduction must be one of 'mean', 'sum'"):
        DiceCELoss(reduction=reduction)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: DiceLoss(smooth=-1e-5), "smooth must be a finite real number >= 0"),
        (lambda: TverskyLoss(alpha=-0.1), "alpha must be a finite real number >= 0"),
        (lambda: TverskyLoss(beta=float("nan")), "beta must be a finite real"),
        (lambda: DiceCELoss(lambda_ce=-1), "lambda_ce must be a finite real"),
        (lambda: DiceCELoss(lambda_dice=-1), "lambda_dice must be a finite real"),
        (
            lambda: CrossEntropyLoss(label_smoothing=1.5),
            r"label_smoothing must be a finite real number in \[0.0, 1.0\]",
        ),
        (lambda: CrossEntropyLoss(class_weight=[1.0, -2.0]), "non-negative"),
        (lambda: DiceLoss(class_weight=[[1.0, 2.0]]), r"got shape \(1, 2\)"),
        (lambda: TverskyLoss(class_weight=[]), "non-empty 1-D"),
        (lambda: FocalLoss(alpha=[1.0, float("nan")]), "finite non-negative"),
        (lambda: CrossEntropyLoss(class_weight=2.0), "got the scalar 2.0"),
    ],
)
def test_bad_constructor_params_raise(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_include_background_false_needs_two_classes():
    x = torch.zeros(2, 1, 3)
    t = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="include_background=False needs at least 2"):
        DiceLoss(include_background=False)(x, t)


@pytest.mark.cuda
@pytest.mark.parametrize("name", MULTICLASS)
def test_cuda_buffers_follow_module(name):
    x, t = data((2, 3, 4, 4))
    c = [1.0, 2.0, 0.5]
    expected = make(name, class_weight=c)(x, t, torch.tensor([1.0, 3.0]))
    loss = make(name, class_weight=c).to("cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        got = loss(x.cuda().half(), t.cuda(), torch.tensor([1.0, 3.0], device="cuda"))
    assert got.device.type == "cuda"
    assert got.dtype == torch.float32
    assert_close(got.cpu(), expected, atol=2e-3, rtol=2e-3)


def test_forward_validated_skips_value_checks_for_prevalidated_batches():
    # The estimators validate targets and weights in fit and call
    # forward_validated, which skips the per-batch value checks (each is a
    # device sync on a GPU); shapes stay checked.
    logits = torch.zeros(3, 2)
    target = torch.tensor([0, 1, 1])
    bad_weight = torch.tensor([1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="sample_weight"):
        CrossEntropyLoss()(logits, target, sample_weight=bad_weight)
    loss = CrossEntropyLoss(reduction="sum").forward_validated(
        logits, target, sample_weight=bad_weight)
    with pytest.raises(ValueError, match="sample_weight"):
        CrossEntropyLoss().forward_validated(logits, target, sample_weight=torch.ones(4))
    assert loss.item() == pytest.approx(np.log(2.0), rel=1e-6)
    with pytest.raises(ValueError, match="sample_weight"):
        CrossEntropyLoss()(logits, target, sample_weight=bad_weight)


# ------------------------------------------------------ logit-adjusted loss

PRIOR = [0.5, 0.3, 0.15, 0.05]


def ce_cases():
    """(shape, sample_weight, ignore_index) for comparisons with cross-entropy."""
    gen = torch.Generator().manual_seed(11)
    return [
        ((8, 4), None, None),
        ((8, 4), torch.rand(8, generator=gen) * 3, None),
        ((8, 4), torch.rand(8, generator=gen), -100),
        ((2, 4, 3, 5), None, 255),
        ((2, 4, 3, 5), torch.rand(2, 3, 5, generator=gen), None),
        ((2, 4, 3, 5), torch.tensor([0.5, 2.0]), -1),
    ]


def with_ignored(t, ignore_index, seed=12):
    if ignore_index is None:
        return t
    mask = torch.rand(t.shape, generator=torch.Generator().manual_seed(seed)) < 0.3
    return t.masked_fill(mask, ignore_index)


@pytest.mark.parametrize("case", range(6))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_logit_adjusted_tau0_equals_cross_entropy(case, reduction):
    shape, sw, ignore_index = ce_cases()[case]
    x, t = data(shape)
    t = with_ignored(t, ignore_index)
    kw = {"ignore_index": ignore_index, "reduction": reduction}
    expected = CrossEntropyLoss(**kw)(x, t, sw)
    got = LogitAdjustedLoss(PRIOR, tau=0.0, **kw)(x, t, sw)
    assert torch.equal(got, expected)  # bit for bit
    # and through the estimators' path
    got = LogitAdjustedLoss(PRIOR, tau=0.0, **kw).forward_validated(x, t, sw)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("case", range(6))
@pytest.mark.parametrize("tau", [0.5, 1.0, 2.5])
def test_logit_adjusted_equals_ce_of_adjusted_logits(case, tau):
    shape, sw, ignore_index = ce_cases()[case]
    x, t = data(shape, dtype=torch.float64)
    t = with_ignored(t, ignore_index)
    counts = torch.tensor([40.0, 24.0, 12.0, 4.0], dtype=torch.float64)  # = 80 * PRIOR
    adjusted = x + tau * torch.log(counts / counts.sum()).reshape(
        (1, 4) + (1,) * (x.ndim - 2)
    )
    valid = torch.ones_like(t, dtype=torch.bool)
    if ignore_index is not None:
        valid = t != ignore_index
    ce = F.cross_entropy(adjusted, t.masked_fill(~valid, 0), reduction="none")
    weight = torch.ones_like(ce) if sw is None else sw.reshape(
        sw.shape + (1,) * (t.ndim - sw.ndim)
    ).expand(t.shape).double()
    expected = torch.where(valid, ce * weight, 0.0)
    kw = {"ignore_index": ignore_index}
    loss = LogitAdjustedLoss(counts, tau=tau, reduction="none", **kw)
    assert_close(loss(x, t, sw), expected, rtol=1e-6, atol=1e-7)  # float32 prior
    summed = LogitAdjustedLoss(counts.tolist(), tau=tau, reduction="sum", **kw)
    assert_close(summed(x, t, sw), expected.sum(), rtol=1e-6, atol=1e-7)
    mean = LogitAdjustedLoss(np.asarray(PRIOR), tau=tau, **kw)(x, t, sw)
    assert_close(mean, expected.sum() / valid.sum(), rtol=1e-6, atol=1e-7)


def test_logit_adjusted_hand_computed():
    # prior (0.8, 0.2), equal logits: the adjusted softmax is the prior itself
    loss = LogitAdjustedLoss([4, 1], reduction="none")
    got = loss(torch.zeros(2, 2), torch.tensor([0, 1]))
    assert_close(got, torch.tensor([-math.log(0.8), -math.log(0.2)]))
    # tau = 2: softmax(z + 2 log pi) = pi**2 / sum(pi**2) = (16, 1) / 17
    loss = LogitAdjustedLoss([4, 1], tau=2.0, reduction="none")
    got = loss(torch.zeros(2, 2), torch.tensor([0, 1]))
    assert_close(got, torch.tensor([-math.log(16 / 17), -math.log(1 / 17)]))


@pytest.mark.parametrize("shape", [(6, 4), (2, 4, 2, 3)])
@pytest.mark.parametrize("tau", [0.0, 1.0, 1.7])
def test_logit_adjusted_gradient(shape, tau):
    x, t = data(shape, dtype=torch.float64)
    gen = torch.Generator().manual_seed(13)
    sw = torch.rand(t.shape, generator=gen, dtype=torch.float64)
    x.requires_grad_(True)
    LogitAdjustedLoss(PRIOR, tau=tau)(x, t, sw).backward()
    prior = torch.tensor(PRIOR, dtype=torch.float32).double()  # the buffer's values
    z = x.detach() + tau * torch.log(prior).reshape((1, 4) + (1,) * (x.ndim - 2))
    onehot = F.one_hot(t, 4).movedim(-1, 1).double()
    expected = (torch.softmax(z, 1) - onehot) * sw.unsqueeze(1) / t.numel()
    assert_close(x.grad, expected)


@pytest.mark.parametrize("big", [1e3, 1e4])
@pytest.mark.parametrize("tau", [1.0, 10.0])
def test_logit_adjusted_finite_for_extreme_logits_and_zero_prior(big, tau):
    x, t = extreme_logits(big)
    t[0, 0, 0] = 2  # a sure-wrong element of the class that has prior 0
    assert (t == 2).sum() > 1
    prior = [0.7, 0.3, 0.0]
    sw = torch.rand(t.shape, generator=torch.Generator().manual_seed(14))
    for reduction in ("mean", "sum", "none"):
        loss = LogitAdjustedLoss(prior, tau=tau, reduction=reduction)
        assert grads_finite(loss, x, t, sw)
        assert grads_finite(loss.forward_validated, x, t, sw)
    loss = LogitAdjustedLoss(prior, tau=tau)
    assert loss.class_prior[2].item() == pytest.approx(1e-12)
    # the zero-prior class is as rare as the floor says: -log(1e-12) for
    # equal logits and the mass almost all on the other classes
    got = LogitAdjustedLoss([0.5, 0.5, 0.0], reduction="none")(
        torch.zeros(1, 3), torch.tensor([2])
    )
    assert got.item() == pytest.approx(-math.log(1e-12 / (1 + 1e-12)), rel=1e-6)


def test_logit_adjusted_min_prior_floor():
    loss = LogitAdjustedLoss([1e6, 1.0, 0.0], min_prior=1e-3)
    np.testing.assert_allclose(
        loss.class_prior.numpy(), [1e6 / (1e6 + 1), 1e-3, 1e-3], rtol=1e-6
    )
    # counts of any magnitude are normalised without overflow
    huge = LogitAdjustedLoss([1e308, 1e308, 3e307])
    assert_close(huge.class_prior, torch.tensor([10.0, 10.0, 3.0]) / 23)
    # a zero copied into the buffer is floored at forward too
    loss = LogitAdjustedLoss([0.5, 0.5])
    loss.class_prior.copy_(torch.tensor([1.0, 0.0]))
    assert grads_finite(loss, torch.zeros(2, 2), torch.tensor([0, 1]))


@pytest.mark.parametrize(
    ("prior", "match"),
    [
        ([0.5, -0.1, 0.6], "class_prior must contain finite non-negative"),
        ([0.5, float("nan")], "class_prior must contain finite non-negative"),
        ([0.5, float("inf")], "class_prior must contain finite non-negative"),
        ([0.0, 0.0, 0.0], "class_prior is all zero"),
        (0.5, r"class_prior must be a non-empty 1-D array.*shape \(\)"),
        ([], r"class_prior must be a non-empty 1-D array.*shape \(0,\)"),
        ([[0.5, 0.5]], r"class_prior must be a non-empty 1-D array.*shape \(1, 2\)"),
        (["a", "b"], "class_prior must be a 1-D array of finite non-negative"),
        (torch.tensor([1.0, -1.0]), "class_prior must contain finite non-negative"),
    ],
)
def test_logit_adjusted_bad_prior_raises(prior, match):
    with pytest.raises(ValueError, match=match):
        LogitAdjustedLoss(prior)


@pytest.mark.parametrize("tau", [0.0, 1.0])
def test_logit_adjusted_wrong_length_prior_raises(tau):
    x, t = data((4, 3))
    msg = r"class_prior has 4 entries but input has K=3 classes"
    with pytest.raises(ValueError, match=msg):
        LogitAdjustedLoss(PRIOR, tau=tau)(x, t)
    with pytest.raises(ValueError, match=msg):
        LogitAdjustedLoss(PRIOR, tau=tau).forward_validated(x, t)
    with pytest.raises(ValueError, match=r"class_prior has 3 entries but the loss"):
        LogitAdjustedLoss(PRIOR).set_class_prior([1, 2, 3])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tau": -1.0}, "tau must be a finite real number >= 0"),
        ({"tau": float("nan")}, "tau must be a finite real number >= 0"),
        ({"min_prior": 0.0}, "min_prior must be a finite real number in"),
        ({"min_prior": 1e-40}, "min_prior must be a finite real number in"),
        ({"min_prior": 2.0}, "min_prior must be a finite real number in"),
        ({"reduction": "avg"}, "reduction must be one of"),
        ({"class_weight": [1.0, -1.0]}, "class_weight must contain finite non-neg"),
    ],
)
def test_logit_adjusted_bad_params_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LogitAdjustedLoss(PRIOR, **kwargs)


def test_logit_adjusted_buffer_state_dict_and_in_place_update():
    x, t = data((2, 4, 3, 3))
    loss = LogitAdjustedLoss([1, 1, 1, 1])
    assert loss.class_prior.dtype == torch.float32
    assert list(loss.state_dict()) == ["class_prior"]
    other = LogitAdjustedLoss(PRIOR)
    expected = other(x, t)
    assert not torch.allclose(loss(x, t), expected)
    loss.load_state_dict(other.state_dict())
    assert_close(loss(x, t), expected)
    # in place: the same tensor object, new values
    loss = LogitAdjustedLoss([1, 1, 1, 1])
    buffer = loss.class_prior
    assert loss.set_class_prior([50, 30, 15, 5]) is loss
    assert loss.class_prior is buffer
    assert_close(loss(x, t), expected)
    buffer.copy_(torch.tensor([0.25, 0.25, 0.25, 0.25]))
    assert_close(loss(x, t), LogitAdjustedLoss([1, 1, 1, 1])(x, t))
    # .to moves (and casts) the buffer
    assert loss.to("meta").class_prior.device.type == "meta"
    loss64 = LogitAdjustedLoss(PRIOR).to(torch.float64)
    assert loss64.class_prior.dtype == torch.float64
    assert loss64(x, t).dtype == torch.float32  # the input decides
    assert_close(loss64(x.double(), t), expected.double())


@pytest.mark.parametrize("cls", [LogitAdjustedLoss, LDAMLoss])
@pytest.mark.parametrize("shape", [(7, 4), (2, 4, 3, 3)])
def test_long_tail_losses_forward_validated_equals_forward(cls, shape):
    x, t = data(shape)
    sw = torch.rand(shape[0], generator=torch.Generator().manual_seed(15))
    t_ignored = with_ignored(t, -1)
    for kw, target in [
        ({}, t),
        ({"reduction": "none"}, t),
        ({"class_weight": [1.0, 2.0, 0.5, 3.0], "reduction": "sum"}, t),
        ({"ignore_index": -1}, t_ignored),
    ]:
        loss = cls([50, 30, 15, 5], **kw)
        for weight in (None, sw):
            assert_close(loss.forward_validated(x, target, weight), loss(x, target, weight))


@pytest.mark.parametrize("cls", [LogitAdjustedLoss, LDAMLoss])
@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 5, 6)])
def test_long_tail_losses_weight_conventions(cls, shape):
    x, t = data(shape)
    counts = [50, 30, 15, 5]
    c = torch.tensor([0.5, 2.0, 1.0, 3.0])
    # a class weight is the sample weight c[target]
    by_class = cls(counts, class_weight=c, reduction="none")(x, t)
    assert_close(by_class, cls(counts, reduction="none")(x, t, sample_weight=c[t]))
    # "mean" is the weighted sum over the number of non-ignored elements
    t = with_ignored(t, -100)
    sw = torch.tensor([1.5, 0.0, 2.0, 1.0, 1.0, 0.5])[: shape[0]]
    total = cls(counts, ignore_index=-100, reduction="sum")(x, t, sw)
    mean = cls(counts, ignore_index=-100)(x, t, sw)
    assert_close(mean, total / (t != -100).sum())
    # ignoring is weighting by 0
    weight = (t != -100).float()
    ignored = cls(counts, ignore_index=-100, reduction="none")(x, t)
    assert (ignored[t == -100] == 0).all()
    assert_close(ignored, cls(counts, reduction="none")(x, t.clamp_min(0), weight))
    # scaling the weights scales the loss
    loss = cls(counts)
    assert_close(loss(x, t.clamp_min(0), 7.0 * sw), 7.0 * loss(x, t.clamp_min(0), sw))


@pytest.mark.parametrize("cls", [LogitAdjustedLoss, LDAMLoss])
def test_long_tail_losses_gradcheck(cls):
    x, t = grad_input((2, 3, 2, 2))
    t[0, 0, 0] = -1
    gen = torch.Generator().manual_seed(0)
    sw = torch.rand(t.shape, dtype=torch.float64, generator=gen)
    loss = cls([5.0, 2.0, 0.0], class_weight=[1.0, 2.0, 0.5], ignore_index=-1)
    assert torch.autograd.gradcheck(lambda z: loss(z, t, sw), (x,))


@pytest.mark.parametrize("cls", [LogitAdjustedLoss, LDAMLoss])
def test_long_tail_losses_low_precision_and_bad_targets(cls):
    x, t = data((2, 4, 3, 3))
    x16 = x.bfloat16()
    got = cls([50, 30, 15, 5])(x16, t)
    assert got.dtype == torch.float32
    assert_close(got, cls([50, 30, 15, 5])(x16.float(), t))
    t[0, 0, 0] = 4
    with pytest.raises(ValueError, match=r"outside \[0, K=4\): 4\."):
        cls([50, 30, 15, 5])(x, t)
    with pytest.raises(ValueError, match="sample_weight must contain finite non-neg"):
        cls([50, 30, 15, 5])(x, t.clamp_max(3), torch.tensor([1.0, -1.0]))


@pytest.mark.cuda
@pytest.mark.parametrize("cls", [LogitAdjustedLoss, LDAMLoss])
def test_long_tail_buffers_follow_module_to_cuda(cls):
    x, t = data((2, 3, 4, 4))
    sw = torch.tensor([1.0, 3.0])
    expected = cls([5.0, 3.0, 0.0])(x, t, sw)
    loss = cls([5.0, 3.0, 0.0]).to("cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        got = loss(x.cuda().half(), t.cuda(), sw.cuda())
    assert got.device.type == "cuda"
    assert got.dtype == torch.float32
    assert_close(got.cpu(), expected, atol=2e-2, rtol=2e-3)
    got = loss.forward_validated(x.cuda(), t.cuda(), sw.cuda())
    assert_close(got.cpu(), expected)


# ----------------------------------------------------------------- LDAM loss


def test_ldam_margins_formula():
    counts = np.array([1000.0, 100.0, 10.0, 1.0])
    loss = LDAMLoss(counts, max_margin=0.8)
    expected = counts ** -0.25
    expected *= 0.8 / expected.max()
    assert loss.margins.dtype == torch.float32
    assert_close(loss.margins, torch.tensor(expected, dtype=torch.float32))
    assert loss.margins.max().item() == pytest.approx(0.8)
    assert loss.margins[3].item() == pytest.approx(0.8)  # the rarest class
    assert loss.margins[0].item() == pytest.approx(0.8 / 1000**0.25, rel=1e-6)
    # only ratios matter, and counts of any magnitude work
    for scale in (1e-100, 1e-3, 1e250):
        assert_close(LDAMLoss(counts * scale, max_margin=0.8).margins, loss.margins)


def test_ldam_zero_count_gets_the_largest_margin():
    loss = LDAMLoss([16.0, 0.0, 1.0, 0.0])
    assert_close(loss.margins, torch.tensor([0.25, 0.5, 0.5, 0.5]))
    only_one = LDAMLoss([0, 0, 7])
    assert_close(only_one.margins, torch.full((3,), 0.5))
    x, t = extreme_logits(1e4)
    t[0, 0, 0] = 1
    assert grads_finite(LDAMLoss([10, 0, 5]), x, t)
    assert grads_finite(LDAMLoss([10, 0, 5], reduction="none"), x, t)


@pytest.mark.parametrize("shape", [(8, 4), (2, 4, 3, 5)])
def test_ldam_no_margin_unit_scale_equals_cross_entropy(shape):
    x, t = data(shape)
    for reduction in ("mean", "sum", "none"):
        expected = CrossEntropyLoss(reduction=reduction)(x, t)
        got = LDAMLoss([50, 30, 15, 5], max_margin=0.0, scale=1.0, reduction=reduction)
        assert torch.equal(got(x, t), expected)


@pytest.mark.parametrize("shape", [(8, 4), (2, 4, 3, 5)])
@pytest.mark.parametrize(("max_margin", "scale"), [(0.5, 30.0), (2.0, 1.0), (0.3, 4.0)])
def test_ldam_matches_formula(shape, max_margin, scale):
    x, t = data(shape, dtype=torch.float64)
    counts = np.array([500.0, 60.0, 20.0, 3.0])
    margins = torch.tensor(max_margin * (counts / 3.0) ** -0.25, dtype=torch.float32)
    onehot = F.one_hot(t, 4).movedim(-1, 1).double()
    delta = margins.double().reshape((1, 4) + (1,) * (x.ndim - 2))
    adjusted = scale * (x - delta * onehot)
    expected = F.cross_entropy(adjusted, t, reduction="none")
    loss = LDAMLoss(counts, max_margin=max_margin, scale=scale, reduction="none")
    assert_close(loss(x, t), expected)
    # gradient: scale * (softmax(adjusted) - onehot), weighted, over N
    sw = torch.rand(t.shape, generator=torch.Generator().manual_seed(16)).double()
    x.requires_grad_(True)
    LDAMLoss(counts, max_margin=max_margin, scale=scale)(x, t, sw).backward()
    grad = scale * (torch.softmax(adjusted, 1) - onehot) * sw.unsqueeze(1) / t.numel()
    assert_close(x.grad, grad)


def test_ldam_margin_is_paid_by_rare_classes():
    # equal confident logits: the rare class needs a wider lead
    x = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([0, 1])
    loss = LDAMLoss([10000, 1], max_margin=1.0, scale=1.0, reduction="none")(x, t)
    assert_close(loss, F.cross_entropy(x - torch.tensor([[0.1, 0.0], [0.0, 1.0]]), t,
                                       reduction="none"))
    assert loss[1] > loss[0]


def test_ldam_buffer_state_dict_and_in_place_update():
    x, t = data((2, 4, 3, 3))
    loss = LDAMLoss([1, 1, 1, 1])
    assert list(loss.state_dict()) == ["margins"]
    assert_close(loss.margins, torch.full((4,), 0.5))
    expected = LDAMLoss([500, 60, 20, 3])(x, t)
    buffer = loss.margins
    assert loss.set_class_counts([500, 60, 20, 3]) is loss
    assert loss.margins is buffer
    assert_close(loss(x, t), expected)
    fresh = LDAMLoss([1, 1, 1, 1])
    fresh.load_state_dict(loss.state_dict())
    assert_close(fresh(x, t), expected)
    assert loss.to("meta").margins.device.type == "meta"
    with pytest.raises(ValueError, match=r"class_counts has 3 entries but the loss"):
        fresh.set_class_counts([1, 2, 3])
    msg = r"class_counts has 4 entries but input has K=3 classes"
    with pytest.raises(ValueError, match=msg):
        fresh(x[:, :3], t.clamp_max(2))


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: LDAMLoss([1.0, -1.0]), "class_counts must contain finite non-negative"),
        (lambda: LDAMLoss([0, 0]), "class_counts is all zero"),
        (lambda: LDAMLoss([1.0, float("inf")]), "class_counts must contain finite"),
        (lambda: LDAMLoss(5), "class_counts must be a non-empty 1-D array"),
        (lambda: LDAMLoss([1, 2], max_margin=-0.1), "max_margin must be a finite real"),
        (lambda: LDAMLoss([1, 2], scale=0.0), r"scale must be a finite real number > 0"),
        (lambda: LDAMLoss([1, 2], scale=float("inf")), "scale must be a finite real"),
        (lambda: LDAMLoss([1, 2], reduction="MEAN"), "reduction must be one of"),
    ],
)
def test_ldam_bad_params_raise(build, match):
    with pytest.raises(ValueError, match=match):
        build()


# --- Multi-label losses

ML_ELEMENTWISE = ["bce", "sigmoid_focal", "asl", "binary_logit_adjusted"]
ML_OVERLAP = ["sigmoid_dice", "sigmoid_tversky"]
MULTILABEL = ML_ELEMENTWISE + ML_OVERLAP + ["sigmoid_dice_ce"]
ML_PRIOR = [0.3, 0.05, 0.6, 0.5]
ML_SHAPES = [(6, 4), (3, 4, 3, 5)]


def make_multilabel(name, **kwargs):
    """Build a multi-label loss for 4 labels (or channels), away from its BCE case."""
    if name == "bce":
        return BinaryCrossEntropyLoss(**kwargs)
    if name == "sigmoid_focal":
        kwargs = {"gamma": 2.0, "alpha": [0.25, 0.5, 0.75, 0.9], **kwargs}
        return SigmoidFocalLoss(**kwargs)
    if name == "asl":
        kwargs = {"gamma_neg": 3.0, "gamma_pos": 1.0, "clip": 0.05, **kwargs}
        return AsymmetricLoss(**kwargs)
    if name == "binary_logit_adjusted":
        return BinaryLogitAdjustedLoss(**{"class_prior": ML_PRIOR, **kwargs})
    kwargs = {"sigmoid": True, **kwargs}
    if name == "sigmoid_dice":
        return DiceLoss(**kwargs)
    if name == "sigmoid_tversky":
        return TverskyLoss(**{"alpha": 0.3, "beta": 0.7, **kwargs})
    return DiceCELoss(**{"lambda_ce": 0.7, **kwargs})


def multilabel_data(shape=(6, 4), seed=20, scale=2.0, dtype=torch.float32):
    """Logits and 0/1 float targets, label prevalences from 0.1 to 0.7."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)
    rate = torch.linspace(0.1, 0.7, shape[1]).reshape((1, -1) + (1,) * (len(shape) - 2))
    y = (torch.rand(shape, generator=gen) < rate).to(dtype)
    return x, y


def exact_reduction(name):
    """The reduction under which weights and copies must agree exactly.

    Element-wise losses and DiceCE: "sum" (the numerator of the weighted mean
    the estimator normalises); Dice and Tversky: "mean", 1 - mean_k D_k.
    """
    return "mean" if name in ML_OVERLAP else "sum"


def objective(name, loss, x, y, weight=None):
    """The training objective: for element-wise losses, sum_i w_i l_i / sum_i w_i."""
    value = loss(x, y, weight)
    if name not in ML_ELEMENTWISE:
        return value
    if weight is None:
        return value / y.numel()
    return value / weight.reshape(weight.shape + (1,) * (y.ndim - weight.ndim)).expand(
        y.shape).sum()


def per_channel_copies(x, y, counts):
    """Repeat each element ``counts`` times among its own channel's elements.

    Returns (1, C, L) logits and targets with a 0/1 weight that is 0 on the
    padding (channels get different numbers of copies).
    """
    n_channels = x.shape[1]
    xs = [x[:, c].reshape(-1).repeat_interleave(counts[:, c].reshape(-1))
          for c in range(n_channels)]
    ys = [y[:, c].reshape(-1).repeat_interleave(counts[:, c].reshape(-1))
          for c in range(n_channels)]
    length = max(len(v) for v in xs)
    big_x, big_y, weight = (torch.zeros(1, n_channels, length) for _ in range(3))
    for c in range(n_channels):
        big_x[0, c, : len(xs[c])] = xs[c]
        big_y[0, c, : len(ys[c])] = ys[c]
        weight[0, c, : len(xs[c])] = 1.0
    return big_x, big_y, weight


@pytest.mark.parametrize("name", MULTILABEL)
@pytest.mark.parametrize("shape", ML_SHAPES)
@pytest.mark.parametrize("per_image", [False, True])
def test_multilabel_zero_weight_equals_leaving_the_sample_out(name, shape, per_image):
    if per_image and name not in ML_OVERLAP:
        pytest.skip("per_image concerns Dice and Tversky only")
    x, y = multilabel_data(shape)
    n = shape[0]
    sw = torch.rand(n, generator=torch.Generator().manual_seed(21)) + 0.5
    sw[1] = 0.0
    keep = sw > 0
    kw = {"per_image": per_image} if name in ML_OVERLAP else {}
    loss = make_multilabel(name, reduction=exact_reduction(name), **kw)
    got = objective(name, loss, x, y, sw)
    assert_close(got, objective(name, loss, x[keep], y[keep], sw[keep]))
    # the same through a per-element weight of the target's shape
    full = sw.reshape((n,) + (1,) * (len(shape) - 1)).expand(shape).contiguous()
    assert_close(objective(name, loss, x, y, full), got)


@pytest.mark.parametrize("name", MULTILABEL)
@pytest.mark.parametrize("shape", ML_SHAPES)
@pytest.mark.parametrize("per_image", [False, True])
def test_multilabel_integer_weight_equals_copies_of_the_sample(name, shape, per_image):
    if per_image and name not in ML_OVERLAP:
        pytest.skip("per_image concerns Dice and Tversky only")
    x, y = multilabel_data(shape)
    counts = torch.tensor([2, 1, 3, 1, 0, 1])[: shape[0]]
    kw = {"per_image": per_image} if name in ML_OVERLAP else {}
    if name not in ML_ELEMENTWISE:
        # a weight k inside one image's sums cancels exactly only without
        # smoothing, where an image of weight 0 would be 0 / 0 (the test
        # above covers weight 0 with smoothing)
        kw["smooth"] = 0.0
        if per_image:
            counts = counts.clamp_min(1)
    loss = make_multilabel(name, reduction=exact_reduction(name), **kw)
    weighted = objective(name, loss, x, y, counts.float())
    copies = objective(name, loss, x.repeat_interleave(counts, 0),
                       y.repeat_interleave(counts, 0))
    assert_close(weighted, copies)


@pytest.mark.parametrize("name", MULTILABEL)
@pytest.mark.parametrize("shape", ML_SHAPES)
def test_multilabel_per_element_integer_weight_equals_copies(name, shape):
    # Weight k on one (sample, label) or (pixel, channel) element is that
    # element repeated k times, within its label's (channel's) own terms;
    # k = 0 leaves it out.
    x, y = multilabel_data(shape)
    gen = torch.Generator().manual_seed(22)
    counts = torch.randint(0, 4, shape, generator=gen)
    big_x, big_y, pad = per_channel_copies(x, y, counts)
    loss = make_multilabel(name, reduction=exact_reduction(name))
    weighted = objective(name, loss, x, y, counts.float())
    assert_close(weighted, objective(name, loss, big_x, big_y, pad))


@pytest.mark.parametrize("name", ML_OVERLAP + ["sigmoid_dice_ce"])
@pytest.mark.parametrize("ignore_index", [255, -1])
def test_multilabel_overlap_zero_weight_equals_ignore_index(name, ignore_index):
    x, y = multilabel_data((3, 4, 3, 5))
    mask = torch.rand(y.shape, generator=torch.Generator().manual_seed(23)) < 0.3
    ignored = y.long().masked_fill(mask, ignore_index)
    # DiceCE "mean" is left out: its cross-entropy part divides by the
    # non-ignored count
    reductions = ["sum"] if name == "sigmoid_dice_ce" else ["sum", "mean"]
    for per_image in (False, True):
        kw = {"per_image": per_image}
        for reduction in reductions:
            with_ignore = make_multilabel(
                name, ignore_index=ignore_index, reduction=reduction, **kw
            )
            weighted = make_multilabel(name, reduction=reduction, **kw)
            assert_close(with_ignore(x, ignored), weighted(x, y, (~mask).float()))


@pytest.mark.parametrize("name", MULTILABEL)
@pytest.mark.parametrize("shape", ML_SHAPES)
def test_multilabel_scaling_weights_changes_no_objective(name, shape):
    x, y = multilabel_data(shape)
    sw = torch.rand(shape, generator=torch.Generator().manual_seed(24)) + 0.1
    if name in ML_ELEMENTWISE:
        for reduction in ("mean", "sum"):
            loss = make_multilabel(name, reduction=reduction)
            assert_close(loss(x, y, 7.0 * sw), 7.0 * loss(x, y, sw))
            assert_close(objective(name, loss, x, y, 7.0 * sw),
                         objective(name, loss, x, y, sw))
        return
    if name == "sigmoid_dice_ce":
        # its Dice term is scale-free, its cross-entropy term scales
        dice = make_multilabel(name, smooth=0.0, lambda_ce=0.0)
        assert_close(dice(x, y, 7.0 * sw), dice(x, y, sw))
        bce = make_multilabel(name, lambda_dice=0.0)
        assert_close(bce(x, y, 7.0 * sw), 7.0 * bce(x, y, sw))
        return
    for per_image in (False, True):
        exact = make_multilabel(name, smooth=0.0, per_image=per_image)
        assert_close(exact(x, y, 7.0 * sw), exact(x, y, sw))
        assert_close(exact(x, y, sw.new_full((shape[0],), 4.0)), exact(x, y))
        if len(shape) > 2:  # (one-pixel images feel the smoothing more)
            smoothed = make_multilabel(name, per_image=per_image)
            assert_close(smoothed(x, y, 7.0 * sw), smoothed(x, y, sw), atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", ML_SHAPES + [(9,)])
@pytest.mark.parametrize("target_dtype", [torch.float32, torch.long, torch.bool])
@pytest.mark.parametrize("weight_kind", [None, "sample", "element"])
def test_bce_matches_torch(shape, target_dtype, weight_kind):
    x, y = multilabel_data(shape) if len(shape) > 1 else multilabel_data((9, 1))
    x, y = x.reshape(shape), y.reshape(shape)
    gen = torch.Generator().manual_seed(25)
    weight = {
        None: None,
        "sample": torch.rand(shape[0], generator=gen) * 3,
        "element": torch.rand(shape, generator=gen) * 3,
    }[weight_kind]
    torch_weight = None
    if weight is not None:
        torch_weight = weight.reshape(weight.shape + (1,) * (len(shape) - weight.ndim))
    expected = F.binary_cross_entropy_with_logits(x, y, torch_weight, reduction="none")
    target = y.to(target_dtype)
    got = BinaryCrossEntropyLoss(reduction="none")(x, target, weight)
    assert got.shape == shape
    assert_close(got, expected)
    assert_close(BinaryCrossEntropyLoss()(x, target, weight), expected.mean())
    assert_close(BinaryCrossEntropyLoss(reduction="sum")(x, target, weight), expected.sum())


@pytest.mark.parametrize("big", [1e3, 1e4])
def test_bce_exact_for_extreme_logits(big):
    x = torch.tensor([[big, -big], [-big, big]])
    y = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # right, right; wrong, wrong
    x.requires_grad_(True)
    loss = BinaryCrossEntropyLoss(reduction="none")(x, y)
    assert_close(loss, torch.tensor([[0.0, 0.0], [big, big]]))
    BinaryCrossEntropyLoss()(x, y).backward()
    # d/dx = (p - y) / n, here 0 or +-1 exactly
    assert_close(x.grad, torch.tensor([[0.0, 0.0], [-1.0, 1.0]]) / 4)


def bce_equivalents():
    """(name, loss) pairs that must equal BinaryCrossEntropyLoss bit for bit."""
    return [
        ("sigmoid_focal", lambda **kw: SigmoidFocalLoss(gamma=0.0, alpha=None, **kw)),
        ("asl", lambda **kw: AsymmetricLoss(gamma_neg=0.0, gamma_pos=0.0, clip=0.0, **kw)),
        ("tau0", lambda **kw: BinaryLogitAdjustedLoss(ML_PRIOR, tau=0.0, **kw)),
        ("tau0_no_prior", lambda **kw: BinaryLogitAdjustedLoss(tau=0.0, **kw)),
        ("half_prior", lambda **kw: BinaryLogitAdjustedLoss([0.5] * 4, tau=2.5, **kw)),
        ("min_prior_half", lambda **kw: BinaryLogitAdjustedLoss(ML_PRIOR, min_prior=0.5,
                                                                **kw)),
    ]


@pytest.mark.parametrize("case", range(6))
@pytest.mark.parametrize("shape", ML_SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_multilabel_losses_reduce_to_bce_exactly(case, shape, reduction):
    _, build = bce_equivalents()[case]
    x, y = multilabel_data(shape)
    sw = torch.rand(shape, generator=torch.Generator().manual_seed(26))
    for weight in (None, sw, sw[(slice(None),) + (0,) * (len(shape) - 1)]):
        xa = x.clone().requires_grad_(True)
        xb = x.clone().requires_grad_(True)
        expected = BinaryCrossEntropyLoss(reduction=reduction)(xa, y, weight)
        got = build(reduction=reduction)(xb, y, weight)
        assert torch.equal(got, expected)  # bit for bit
        expected.sum().backward()
        got.sum().backward()
        assert_close(xb.grad, xa.grad, rtol=0, atol=0)
        got = build(reduction=reduction).forward_validated(x, y, weight)
        assert torch.equal(got, expected.detach())


@pytest.mark.parametrize("shape", ML_SHAPES)
def test_sigmoid_focal_per_label_alpha_acts_per_label(shape):
    x, y = multilabel_data(shape)
    alpha = [0.1, 0.5, 0.8, 1.0]
    got = SigmoidFocalLoss(gamma=1.5, alpha=alpha, reduction="none")(x, y)
    for c, a in enumerate(alpha):
        column = SigmoidFocalLoss(gamma=1.5, alpha=a, reduction="none")(x[:, c], y[:, c])
        assert_close(got[:, c], column)
    # the same numbers for every label are the scalar alpha
    same = SigmoidFocalLoss(alpha=[0.25] * 4, reduction="none")(x, y)
    assert_close(same, SigmoidFocalLoss(reduction="none")(x, y))
    # alpha_t = alpha for positives, 1 - alpha for negatives, per label
    plain = SigmoidFocalLoss(gamma=1.5, alpha=None, reduction="none")(x, y)
    a = torch.tensor(alpha).reshape((1, 4) + (1,) * (len(shape) - 2))
    assert_close(got, plain * torch.where(y == 1, a, 1 - a))


def test_sigmoid_focal_alpha_forms_and_buffer():
    x, y = multilabel_data((5, 3))
    expected = SigmoidFocalLoss(alpha=torch.tensor([0.2, 0.6, 0.9]))(x, y)
    for alpha in ([0.2, 0.6, 0.9], (0.2, 0.6, 0.9), np.array([0.2, 0.6, 0.9])):
        loss = SigmoidFocalLoss(alpha=alpha)
        assert loss.alpha.dtype == torch.float32
        assert list(loss.state_dict()) == ["alpha"]
        assert_close(loss(x, y), expected)
    # scalars stay plain numbers, as before (and nothing in the state_dict)
    for alpha in (0.25, np.float64(0.25), torch.tensor(0.25), np.array(0.25)):
        loss = SigmoidFocalLoss(alpha=alpha)
        assert loss.alpha == 0.25 and isinstance(loss.alpha, float)
        assert list(loss.state_dict()) == []
    assert SigmoidFocalLoss().alpha == 0.25 and SigmoidFocalLoss().gamma == 2.0
    assert SigmoidFocalLoss(alpha=None).alpha is None
    loss64 = SigmoidFocalLoss(alpha=[0.2, 0.6, 0.9]).to(torch.float64)
    assert_close(loss64(x.double(), y), expected.double())
    assert "alpha=[0.2, 0.6, 0.9]" in repr(SigmoidFocalLoss(alpha=[0.2, 0.6, 0.9]))


@pytest.mark.parametrize(
    ("gamma_neg", "gamma_pos", "clip"),
    [(4.0, 0.0, 0.05), (2.0, 1.0, 0.0), (0.5, 0.5, 0.2), (0.0, 2.0, 0.1), (4.0, 0.0, 0.9)],
)
def test_asl_matches_formula(gamma_neg, gamma_pos, clip):
    x, y = multilabel_data((3, 4, 5), dtype=torch.float64)
    p = torch.sigmoid(x)
    p_m = (p - clip).clamp_min(0)
    positive = -((1 - p) ** gamma_pos) * torch.log(p)
    negative = -(p_m**gamma_neg) * torch.log(1 - p_m)
    expected = torch.where(y == 1, positive, negative)
    loss = AsymmetricLoss(gamma_neg, gamma_pos, clip, reduction="none")
    got = loss(x, y)
    assert got.dtype == torch.float64
    assert_close(got, expected)
    assert_close(AsymmetricLoss(gamma_neg, gamma_pos, clip)(x, y), expected.mean())


@pytest.mark.parametrize(("gamma_neg", "gamma_pos", "clip"),
                         [(4.0, 0.0, 0.05), (2.0, 1.5, 0.1), (0.5, 0.5, 0.0)])
def test_asl_focusing_factors_have_no_gradient(gamma_neg, gamma_pos, clip):
    # the gradient is that of the cross-entropy terms times constant factors
    x, y = multilabel_data((6, 4), dtype=torch.float64)
    sw = torch.rand(6, 4, generator=torch.Generator().manual_seed(27), dtype=torch.float64)
    x.requires_grad_(True)
    AsymmetricLoss(gamma_neg, gamma_pos, clip)(x, y, sw).backward()
    p = torch.sigmoid(x.detach())
    p_m = (p - clip).clamp_min(0)
    grad_pos = -((1 - p) ** gamma_pos) * (1 - p)  # d/dx of -log p is p - 1
    # d/dx of -log(1 - p + m) is p (1 - p) / (1 - p + m) where p > m, else 0
    grad_neg = torch.where(p > clip, p_m**gamma_neg * p * (1 - p) / (1 - p + clip), 0.0)
    expected = torch.where(y == 1, grad_pos, grad_neg) * sw / y.numel()
    assert_close(x.grad, expected)


def test_asl_clip_discards_easy_negatives():
    clip = 0.05
    logit_of = math.log(clip / (1 - clip))
    x = torch.tensor([[logit_of - 1.0, logit_of - 1e-3, -1e4, logit_of + 1.0, -3.0]])
    y = torch.tensor([[0, 0, 0, 0, 1]])
    x.requires_grad_(True)
    loss = AsymmetricLoss(gamma_neg=0.0, clip=clip, reduction="none")(x, y)
    loss.sum().backward()
    # p <= clip: neither loss nor gradient
    assert loss[0, :3].tolist() == [0.0, 0.0, 0.0]
    assert x.grad[0, :3].tolist() == [0.0, 0.0, 0.0]
    p = torch.sigmoid(torch.tensor(logit_of + 1.0))
    assert_close(loss[0, 3], -torch.log(1 - (p - clip)))
    # positives are not clipped
    assert_close(loss[0, 4], -F.logsigmoid(torch.tensor(-3.0)))


@pytest.mark.parametrize("shape", ML_SHAPES)
@pytest.mark.parametrize("tau", [0.5, 1.0, 2.5])
def test_binary_logit_adjusted_matches_formula(shape, tau):
    x, y = multilabel_data(shape, dtype=torch.float64)
    sw = torch.rand(shape, generator=torch.Generator().manual_seed(28), dtype=torch.float64)
    prior = torch.tensor(ML_PRIOR, dtype=torch.float32).double()  # the buffer's values
    shift = tau * torch.log(prior / (1 - prior))
    z = x + shift.reshape((1, 4) + (1,) * (len(shape) - 2))
    expected = F.binary_cross_entropy_with_logits(z, y, sw, reduction="none")
    loss = BinaryLogitAdjustedLoss(ML_PRIOR, tau=tau, reduction="none")
    assert_close(loss(x, y, sw), expected)
    x.requires_grad_(True)
    BinaryLogitAdjustedLoss(np.asarray(ML_PRIOR), tau=tau)(x, y, sw).backward()
    assert_close(x.grad, sw * (torch.sigmoid(z) - y) / y.numel())


def test_binary_logit_adjusted_hand_computed_and_floor():
    # prior 0.2: equal logits give sigmoid(log(0.25)) = 0.2, the prior itself
    loss = BinaryLogitAdjustedLoss([0.2], reduction="none")
    got = loss(torch.zeros(2, 1), torch.tensor([[1], [0]]))
    assert_close(got, torch.tensor([[-math.log(0.2)], [-math.log(0.8)]]))
    # never and always present: kept min_prior away from 0 and 1
    loss = BinaryLogitAdjustedLoss([0.0, 1.0, 1e-20, 0.5], reduction="none")
    assert_close(loss.class_prior, torch.tensor([1e-12, 1.0, 1e-12, 0.5]))
    largest = math.log((1 - 1e-12) / 1e-12)  # 27.63
    got = loss(torch.zeros(1, 4), torch.ones(1, 4))
    expected = -F.logsigmoid(torch.tensor([-largest, largest, -largest, 0.0]))
    assert_close(got[0], expected)
    assert torch.isfinite(got).all()
    # a floor of 0.5 removes the adjustment; other floors move both ends
    loss = BinaryLogitAdjustedLoss([0.0, 0.999, 0.3], min_prior=0.01)
    np.testing.assert_allclose(loss.class_prior.numpy(), [0.01, 0.99, 0.3], rtol=1e-6)


def test_binary_logit_adjusted_prior_buffer_and_set_class_prior():
    x, y = multilabel_data((5, 4, 2, 2))
    expected = BinaryLogitAdjustedLoss(ML_PRIOR)(x, y)
    # built without a prior, as an estimator may: tau=0 works, others wait
    loss = BinaryLogitAdjustedLoss()
    assert loss.class_prior is None
    assert list(loss.state_dict()) == []
    bce = BinaryCrossEntropyLoss()(x, y)
    assert torch.equal(BinaryLogitAdjustedLoss(tau=0.0)(x, y), bce)
    with pytest.raises(ValueError, match="class_prior is not set"):
        loss(x, y)
    assert loss.set_class_prior(ML_PRIOR) is loss
    assert loss.class_prior.dtype == torch.float32
    assert_close(loss(x, y), expected)
    # then in place: the same tensor, new values
    buffer = loss.class_prior
    loss.set_class_prior([0.5, 0.5, 0.5, 0.5])
    assert loss.class_prior is buffer
    assert_close(loss(x, y), BinaryCrossEntropyLoss()(x, y))
    buffer.copy_(torch.tensor(ML_PRIOR))
    assert_close(loss(x, y), expected)
    with pytest.raises(ValueError, match=r"class_prior has 3 entries but the loss was"):
        loss.set_class_prior([0.1, 0.2, 0.3])
    # the state_dict restores it, also into a loss built without a prior
    assert list(loss.state_dict()) == ["class_prior"]
    for fresh in (BinaryLogitAdjustedLoss(), BinaryLogitAdjustedLoss([0.5] * 4)):
        fresh.load_state_dict(loss.state_dict())
        assert_close(fresh(x, y), expected)
    loss64 = BinaryLogitAdjustedLoss(ML_PRIOR).to(torch.float64)
    assert loss64.class_prior.dtype == torch.float64
    assert_close(loss64(x.double(), y), expected.double())
    assert loss.to("meta").class_prior.device.type == "meta"


@pytest.mark.parametrize("name", ML_OVERLAP)
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("shape", ML_SHAPES)
def test_sigmoid_overlap_equals_two_class_softmax_per_channel(name, per_image, shape):
    # sigmoid(x) = softmax([0, x])_1: channel c is a two-class problem with
    # class 1 the structure
    x, y = multilabel_data(shape)
    gen = torch.Generator().manual_seed(29)
    sw = torch.rand(shape[0] if per_image else shape, generator=gen)
    got = make_multilabel(name, per_image=per_image, reduction="none")(x, y, sw)
    assert got.shape == ((shape[0], 4) if per_image else (4,))
    for c in range(4):
        pair = torch.stack([torch.zeros_like(x[:, c]), x[:, c]], dim=1)
        softmax_loss = make(name.removeprefix("sigmoid_"), per_image=per_image,
                            include_background=False, reduction="none")
        weight = sw if per_image else sw[:, c]
        expected = softmax_loss(pair, y[:, c].long(), weight)
        assert_close(got[..., c], expected[..., 0])


def test_sigmoid_dice_hand_computed():
    # one image of 2 pixels, 2 overlapping channels: probabilities
    # (0.75, 0.25) and (0.5, 0.75); masks (1, 0) and (1, 1)
    x = torch.tensor([[[L3, -L3], [0.0, L3]]])
    y = torch.tensor([[[1, 0], [1, 1]]])
    # channel 0: TP .75, sum p 1, sum g 1 -> 0.75; channel 1: TP 1.25, 1.25, 2
    d0, d1 = 1.5 / 2.0, 2.5 / 3.25
    got = DiceLoss(smooth=0.0, sigmoid=True, reduction="none")(x, y)
    assert_close(got, torch.tensor([1 - d0, 1 - d1]))
    no_bg = DiceLoss(smooth=0.0, sigmoid=True, include_background=False)(x, y)
    assert_close(no_bg.item(), 1 - d1)
    # Tversky: channel 1 FP = 0.0, FN = 0.75
    t1 = 1.25 / (1.25 + 0.3 * 0.0 + 0.7 * 0.75)
    got = TverskyLoss(alpha=0.3, beta=0.7, smooth=0.0, sigmoid=True, reduction="none")
    assert_close(got(x, y)[1].item(), 1 - t1)


@pytest.mark.parametrize("per_image", [False, True])
def test_sigmoid_dice_ce_is_weighted_sum(per_image):
    x, y = multilabel_data((3, 4, 3, 5))
    t = y.long()
    t[0, 1, 0] = 255
    sw = torch.tensor([1.0, 0.0, 2.0])
    valid = (t != 255).float()
    smoothed = y * 0.8 + 0.1  # label_smoothing=0.2 moves targets towards 0.5
    bce = F.binary_cross_entropy_with_logits(x, smoothed, reduction="none")
    bce = bce * valid * sw[:, None, None, None]
    for reduction in ("mean", "sum"):
        kw = {"per_image": per_image, "ignore_index": 255, "reduction": reduction}
        dice = DiceLoss(squared=True, sigmoid=True, **kw)(x, t, sw)
        ce = bce.sum() / valid.sum() if reduction == "mean" else bce.sum()
        loss = DiceCELoss(lambda_dice=0.3, lambda_ce=2.0, squared=True,
                          label_smoothing=0.2, sigmoid=True, **kw)
        assert_close(loss(x, t, sw), 0.3 * dice + 2.0 * ce)


@pytest.mark.parametrize("name", ML_OVERLAP + ["sigmoid_dice_ce"])
def test_sigmoid_overlap_options(name):
    x, y = multilabel_data((2, 3, 4))
    if name != "sigmoid_dice_ce":
        terms = make_multilabel(name, reduction="none")(x, y)
        no_bg = make_multilabel(name, include_background=False, reduction="none")(x, y)
        assert_close(no_bg, terms[1:])  # channel 0 left out
    with pytest.raises(ValueError, match="include_background=False needs at least 2"):
        make_multilabel(name, include_background=False)(x[:, :1], y[:, :1])
    msg = r"class_weight must be None with sigmoid=True; got \[1.0, 2.0, 3.0\]"
    with pytest.raises(ValueError, match=msg):
        make_multilabel(name, class_weight=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"sigmoid=True; got shape \(2,\)"):
        make_multilabel(name)(x[:, 0, 0], y[:, 0, 0])
    assert "sigmoid=True" in repr(make_multilabel(name))
    # the softmax default is untouched by the option's existence
    assert "sigmoid=False" in repr(make(name.removeprefix("sigmoid_")))


@pytest.mark.parametrize("name", MULTILABEL)
@pytest.mark.parametrize("big", [1e3, 1e4])
@pytest.mark.parametrize("shape", ML_SHAPES)
def test_multilabel_finite_for_extreme_logits_and_empty_labels(name, big, shape):
    gen = torch.Generator().manual_seed(30)
    x = torch.randint(-1, 2, shape, generator=gen).float() * big
    y = torch.randint(0, 2, shape, generator=gen).float()
    y[:, 0] = 0  # a label present nowhere in the batch
    y[:, 1] = 1  # and one present everywhere
    sw = torch.rand(shape[0], generator=gen)
    variants = [{}, {"reduction": "sum"}]
    if name in ML_OVERLAP:
        variants += [{"per_image": True}, {"per_image": True, "include_background": False}]
    elif name == "sigmoid_focal":
        variants += [{"gamma": g} for g in GAMMAS]
    elif name == "asl":
        variants += [{"gamma_neg": 0.5, "gamma_pos": 0.5, "clip": 0.0}, {"clip": 1e-30}]
    elif name == "binary_logit_adjusted":
        variants += [{"class_prior": [0.0, 1.0, 0.5, 1e-30], "tau": 10.0}]
    for kw in variants:
        loss = make_multilabel(name, **kw)
        assert grads_finite(loss, x, y, sw)
        assert grads_finite(loss, x, y)
        assert grads_finite(loss.forward_validated, x, y, sw)


@pytest.mark.parametrize("name", MULTILABEL)
def test_multilabel_forward_validated_equals_forward(name):
    x, y = multilabel_data((3, 4, 2, 3))
    sw = torch.rand(3, generator=torch.Generator().manual_seed(31))
    for kw in ({}, {"reduction": "sum"}):
        loss = make_multilabel(name, **kw)
        for weight in (None, sw, sw[:, None, None, None].expand(y.shape)):
            assert_close(loss.forward_validated(x, y, weight), loss(x, y, weight))
            assert_close(loss.forward_validated(x, y.long(), weight), loss(x, y, weight))


@pytest.mark.parametrize("name", MULTILABEL)
def test_multilabel_low_precision_input_is_computed_in_float32(name):
    x, y = multilabel_data((2, 4, 3, 3))
    x16 = x.bfloat16()
    got = make_multilabel(name)(x16, y)
    assert got.dtype == torch.float32
    assert_close(got, make_multilabel(name)(x16.float(), y))
    got64 = make_multilabel(name)(x.double(), y)
    assert got64.dtype == torch.float64


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("bce", {}),
        ("sigmoid_focal", {}),
        ("sigmoid_focal", {"gamma": 0.5, "alpha": 0.3}),
        ("asl", {"gamma_neg": 0.0, "gamma_pos": 0.0, "clip": 0.1}),
        ("binary_logit_adjusted", {"tau": 1.5}),
        ("sigmoid_dice", {"ignore_index": -1, "squared": True}),
        ("sigmoid_dice", {"per_image": True, "include_background": False}),
        ("sigmoid_tversky", {"ignore_index": -1, "per_image": True}),
        ("sigmoid_dice_ce", {"ignore_index": -1, "label_smoothing": 0.1}),
    ],
)
def test_multilabel_gradcheck(name, kwargs):
    # (ASL with nonzero gammas has constant focusing factors by design.)
    x, y = multilabel_data((2, 4, 2, 2), scale=1.5, dtype=torch.float64)
    t = y.long()
    if "ignore_index" in kwargs:
        t[0, 1, 0, 0] = -1
    gen = torch.Generator().manual_seed(0)
    sw = torch.rand(y.shape, dtype=torch.float64, generator=gen)
    loss = make_multilabel(name, **kwargs)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: loss(z, t, sw), (x,))


@pytest.mark.parametrize("name", MULTILABEL)
@pytest.mark.parametrize("bad", [2, -1, 0.5, float("nan")])
def test_multilabel_non_binary_target_raises(name, bad):
    x, y = multilabel_data((3, 4, 2))
    y[1, 2, 0] = bad
    with pytest.raises(ValueError, match="target must contain only 0 and 1"):
        make_multilabel(name)(x, y)
    if name not in ML_ELEMENTWISE and bad == 2:
        # but the ignore_index value is welcome
        make_multilabel(name, ignore_index=2)(x, y)
        msg = r"only 0 and 1 \(or ignore_index=255\) for .*\(sigmoid=True\); got 2"
        with pytest.raises(ValueError, match=msg):
            make_multilabel(name, ignore_index=255)(x, y)


@pytest.mark.parametrize("name", MULTILABEL)
def test_multilabel_bad_shapes_and_weights_raise(name):
    x, y = multilabel_data((3, 4, 5))
    msg = r"target shape \(3, 5\) does not match input shape \(3, 4, 5\): .* one 0/1 target"
    with pytest.raises(ValueError, match=msg):
        make_multilabel(name)(x, y[:, 0])
    msg = (
        r"sample_weight.shape == \(3, 5\), expected \(3,\) \(one weight per sample\) "
        r"or \(3, 4, 5\) \(one weight per element\)"
    )
    with pytest.raises(ValueError, match=msg):
        make_multilabel(name)(x, y, sample_weight=torch.ones(3, 5))
    with pytest.raises(ValueError, match=msg):
        make_multilabel(name).forward_validated(x, y, sample_weight=torch.ones(3, 5))
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="sample_weight must contain finite non-neg"):
            make_multilabel(name)(x, y, sample_weight=torch.tensor([1.0, bad, 1.0]))
    with pytest.raises(TypeError, match="target must be a torch.Tensor"):
        make_multilabel(name)(x, y.tolist())
    with pytest.raises(ValueError, match="input must be a floating point tensor"):
        make_multilabel(name)(x.long(), y)
    if name in ("sigmoid_focal", "binary_logit_adjusted"):
        # a per-label setting of 4 entries, and 3 labels
        what = "alpha" if name == "sigmoid_focal" else "class_prior"
        msg = rf"{what} has 4 entries \(one per label\) but input has shape \(3, 3, 5\)"
        with pytest.raises(ValueError, match=msg):
            make_multilabel(name)(x[:, :3], y[:, :3])
        with pytest.raises(ValueError, match=rf"{what} has 4 entries .* shape \(3,\)"):
            make_multilabel(name)(x[:, 0, 0], y[:, 0, 0])


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: AsymmetricLoss(gamma_neg=-1.0), "gamma_neg must be a finite .* >= 0"),
        (lambda: AsymmetricLoss(gamma_pos=float("nan")), "gamma_pos must be a finite real"),
        (lambda: AsymmetricLoss(gamma_pos=float("inf")), "gamma_pos must be a finite real"),
        (lambda: AsymmetricLoss(gamma_neg="4"), "gamma_neg must be a finite real"),
        (lambda: AsymmetricLoss(clip=1.0), r"clip must be a finite real .* in \[0, 1\)"),
        (lambda: AsymmetricLoss(clip=-0.1), "clip must be a finite real number >= 0"),
        (lambda: AsymmetricLoss(clip=float("nan")), "clip must be a finite real number"),
        (lambda: AsymmetricLoss(reduction="avg"), "reduction must be one of"),
        (lambda: BinaryCrossEntropyLoss(reduction=None), "reduction must be one of"),
        (lambda: SigmoidFocalLoss(gamma=-2.0), "gamma must be a finite real number >= 0"),
        (lambda: SigmoidFocalLoss(alpha=[0.5, 1.5]),
         r"alpha must contain finite numbers in \[0, 1\], one per label; got \[0.5, 1.5\]"),
        (lambda: SigmoidFocalLoss(alpha=[0.5, float("nan")]), "alpha must contain finite"),
        (lambda: SigmoidFocalLoss(alpha=[]), r"non-empty 1-D sequence.*got shape \(0,\)"),
        (lambda: SigmoidFocalLoss(alpha=[[0.5, 0.5]]), r"got shape \(1, 2\)"),
        (lambda: SigmoidFocalLoss(alpha=["a"]), "alpha must be None, a number in"),
        (lambda: SigmoidFocalLoss(alpha="0.5"), "alpha must be a finite real number"),
        (lambda: SigmoidFocalLoss(alpha=True), "alpha must be a finite real number"),
        (lambda: BinaryLogitAdjustedLoss(tau=-1.0), "tau must be a finite real num.* >= 0"),
        (lambda: BinaryLogitAdjustedLoss(tau=float("inf")), "tau must be a finite real"),
        (lambda: BinaryLogitAdjustedLoss(min_prior=0.6),
         r"min_prior must be a finite real number in \["),
        (lambda: BinaryLogitAdjustedLoss(min_prior=0.0), "min_prior must be a finite real"),
        (lambda: BinaryLogitAdjustedLoss([0.5, 1.5]),
         r"class_prior must contain label prevalences.*got \[0.5, 1.5\]"),
        (lambda: BinaryLogitAdjustedLoss([0.5, -0.1]), "class_prior must contain label"),
        (lambda: BinaryLogitAdjustedLoss([0.5, float("nan")]), "class_prior must contain"),
        (lambda: BinaryLogitAdjustedLoss([40, 10]), "class_prior must contain label prev"),
        (lambda: BinaryLogitAdjustedLoss(0.5), r"class_prior must be a non-empty .*\(\)"),
        (lambda: BinaryLogitAdjustedLoss([[0.5]]), r"non-empty 1-D array.*\(1, 1\)"),
        (lambda: BinaryLogitAdjustedLoss(["a"]), "class_prior must be a 1-D array"),
        (lambda: BinaryLogitAdjustedLoss().set_class_prior([2.0]), "label prevalences"),
        (lambda: DiceLoss(sigmoid=True, class_weight=[1.0]), "class_weight must be None"),
    ],
)
def test_multilabel_bad_constructor_params_raise(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.cuda
@pytest.mark.parametrize("name", MULTILABEL)
def test_multilabel_cuda_follows_module(name):
    x, y = multilabel_data((2, 4, 4, 4))
    sw = torch.tensor([1.0, 3.0])
    expected = make_multilabel(name)(x, y, sw)
    loss = make_multilabel(name).to("cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        got = loss(x.cuda().half(), y.cuda().bool(), sw.cuda())
    assert got.device.type == "cuda"
    assert got.dtype == torch.float32
    assert_close(got.cpu(), expected, atol=2e-2, rtol=2e-3)
    got = loss.forward_validated(x.cuda(), y.cuda(), sw.cuda())
    assert_close(got.cpu(), expected)


# ---------------------------------------------------------------- Balanced MSE

BMSE_PRIORS = ["bni", "gai", "bmc"]
BMSE_FITTED = ["bni", "gai"]


def bmse_targets(n=60, n_targets=None, seed=0):
    """Long-tailed float64 training targets, (n,) or (n, n_targets)."""
    gen = torch.Generator().manual_seed(seed)
    shape = (n,) if n_targets is None else (n, n_targets)
    return torch.empty(shape, dtype=torch.float64).exponential_(1.0, generator=gen)


def bmse_batch(n=8, n_targets=None, seed=1, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    shape = (n,) if n_targets is None else (n, n_targets)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    t = torch.randn(shape, generator=gen, dtype=torch.float64).abs()
    return x.to(dtype), t.to(dtype)


def bmse_loss_and_grads(loss, x, t, sample_weight=None, index=None):
    """Loss value and its gradients w.r.t. the predictions and log_sigma.

    With ``index``, the rows ``index`` of ``x`` and ``t`` (repetitions) are
    used; gradients of repeated rows add up on their shared prediction.
    """
    loss.zero_grad()
    leaf = x.clone().requires_grad_(True)
    xi, ti = (leaf, t) if index is None else (leaf[index], t[index])
    value = loss(xi, ti, sample_weight)
    value.backward()
    return value.detach(), leaf.grad, loss.log_sigma.grad.clone()


def bmse_prior_buffers(loss):
    return [getattr(loss, name) for name in
            ("prior_means", "prior_variances", "prior_log_weights")]


@pytest.mark.parametrize(
    ("prior", "kwargs", "y_train"),
    [
        # one sample per bin, bins 0.1 wide over [-50, 50]
        ("bni", {"n_bins": 1000}, -50 + 0.1 * (np.arange(1000) + 0.5)),
        # one component of variance 1e8
        ("gai", {"n_components": 1}, np.array([-1e4, 1e4])),
    ],
)
def test_balanced_mse_flat_prior_equals_mse(prior, kwargs, y_train):
    # A flat prior has nothing to balance: log Z does not depend on the
    # prediction, and the loss is the squared error plus a constant.
    loss = BalancedMSELoss(prior, noise_sigma=1.0, **kwargs).fit_prior(y_train)
    x, t = bmse_batch(20, dtype=torch.float32)
    x = 2 * x
    value, grad, _ = bmse_loss_and_grads(loss, x, t)
    leaf = x.clone().requires_grad_(True)
    F.mse_loss(leaf, t).backward()
    assert_close(grad, leaf.grad, rtol=0, atol=1e-5)
    loss.reduction = "none"
    offset = loss(x, t) - (x - t).square()
    assert_close(offset, offset.mean().expand_as(offset), rtol=0, atol=1e-4)


def test_balanced_mse_bni_uniform_bins_leave_no_ripple():
    # sigma = bin width / 5 on a flat histogram. Bins integrated exactly as
    # uniform densities give a flat log Z; masses at the bin centres (the
    # paper's form), or Gaussians of the bins' variance h**2 / 12, make it
    # ripple between the centres: a force towards the gaps.
    s = 0.02
    loss = BalancedMSELoss(noise_sigma=s, n_bins=1000, reduction="none")
    loss.fit_prior(-50 + 0.1 * (np.arange(1000) + 0.5))
    centres, variances = loss.prior_means.double()[0], loss.prior_variances.double()[0]
    h = 99.9 / 1000  # the range of the targets over n_bins
    assert_close(variances, torch.full_like(variances, h**2 / 12))
    x = torch.linspace(-1.0, 1.0, 401, dtype=torch.float64).requires_grad_(True)
    loss(x, x.detach()).sum().backward()  # the squared error's gradient is 0
    # (what remains is the float32 rounding of the stored bin edges)
    assert float(x.grad.abs().max()) / (2 * s) < 1e-5

    def ripple(v):
        xs = x.detach().clone().requires_grad_(True)
        terms = (-0.5 * math.log1p(v / s**2)
                 - (xs[:, None] - centres) ** 2 / (2 * (s**2 + v)))
        (2 * s**2 * torch.logsumexp(terms, dim=1)).sum().backward()
        return float(xs.grad.abs().max()) / (2 * s)  # vs a one-sigma error's

    assert ripple(0.0) > 1.0
    assert ripple(h**2 / 12) > 0.1


@pytest.mark.parametrize("prior", BMSE_FITTED)
@pytest.mark.parametrize(("n", "n_targets"), [(30, None), (30, 2), (3000, None)])
def test_balanced_mse_integer_weights_are_repetitions(prior, n, n_targets):
    # (3000 samples, about 2250 of positive weight: GAI's EM runs on a
    # histogram of the distinct values)
    y = bmse_targets(n, n_targets)
    k = np.random.default_rng(0).integers(0, 4, size=n)
    k[:2] = (0, 3)
    index = torch.as_tensor(np.repeat(np.arange(n), k))
    weighted = BalancedMSELoss(prior, noise_sigma=0.7, random_state=0, n_bins=12,
                               reduction="sum").fit_prior(y, k)
    repeated = BalancedMSELoss(prior, noise_sigma=0.7, random_state=0, n_bins=12,
                               reduction="sum").fit_prior(y[index])
    for a, b in zip(bmse_prior_buffers(weighted), bmse_prior_buffers(repeated),
                    strict=True):
        assert_close(a, b, rtol=1e-6, atol=1e-6)
    x, t = bmse_batch(n, n_targets)
    kw = torch.as_tensor(k, dtype=torch.float64)
    for a, b in zip(bmse_loss_and_grads(weighted, x, t, kw),
                    bmse_loss_and_grads(repeated, x, t, index=index), strict=True):
        assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("prior", BMSE_FITTED)
def test_balanced_mse_zero_weight_removes_and_scale_changes_nothing(prior):
    y = bmse_targets(40)
    w = np.random.default_rng(1).uniform(0.1, 2.0, size=40)
    w[[0, 5, 17]] = 0.0
    keep = w > 0
    y[0] = 50.0  # a zero-weight outlier must not stretch the bins
    x, t = bmse_batch(40)
    kw = dict(noise_sigma=0.8, random_state=3, n_bins=15, reduction="sum")
    with_zeros = BalancedMSELoss(prior, **kw).fit_prior(y, w)
    removed = BalancedMSELoss(prior, **kw).fit_prior(y[keep], w[keep])
    for a, b in zip(bmse_prior_buffers(with_zeros), bmse_prior_buffers(removed),
                    strict=True):
        assert_close(a, b, rtol=1e-6, atol=1e-6)
    tw = torch.as_tensor(w)
    kept = torch.as_tensor(keep)
    for a, b in zip(bmse_loss_and_grads(with_zeros, x, t, tw),
                    bmse_loss_and_grads(removed, x[kept], t[kept], tw[kept]),
                    strict=True):
        if a.ndim:  # the removed samples' predictions get no gradient
            assert not a[~kept].any()
            a = a[kept]
        assert_close(a, b, rtol=1e-6, atol=1e-6)
    # Any scale, as a tensor or an array: the prior is the same.
    for scale in (1e-300, 3.0, 1e300):
        scaled = BalancedMSELoss(prior, **kw).fit_prior(y, torch.as_tensor(w) * scale)
        for a, b in zip(bmse_prior_buffers(scaled), bmse_prior_buffers(with_zeros),
                        strict=True):
            assert_close(a, b, rtol=1e-6, atol=1e-6)
    # The weights of forward scale the loss, as for every skweight loss.
    with_zeros.reduction = "mean"
    assert_close(with_zeros(x, t, 4.0 * tw), 4.0 * with_zeros(x, t, tw))


@pytest.mark.parametrize("prior", BMSE_PRIORS)
def test_balanced_mse_product_form_is_one_loss_per_target(prior):
    # Several targets: each element's loss is that of its target alone, with
    # the prior of that column; per-element and per-target weights act
    # exactly as on the squared error.
    y = bmse_targets(50, 3)
    w_fit = torch.rand(50, 3, generator=torch.Generator().manual_seed(4)).double()
    x, t = bmse_batch(10, 3)
    w = torch.rand(10, 3, generator=torch.Generator().manual_seed(5)).double()
    kw = dict(noise_sigma=0.6, random_state=0, n_bins=10, reduction="none")
    joint = BalancedMSELoss(prior, **kw).fit_prior(y, w_fit)(x, t, w)
    for j in range(3):
        alone = BalancedMSELoss(prior, **kw).fit_prior(y[:, j], w_fit[:, j])
        assert_close(joint[:, j], alone(x[:, j], t[:, j], w[:, j]))
    per_target = BalancedMSELoss(prior, target_weight=[1.0, 0.0, 2.5], **kw)
    per_target.fit_prior(y, w_fit)
    assert_close(per_target(x, t, w), joint * torch.tensor([1.0, 0.0, 2.5]).double())
    # (N,) weights are per sample
    per_sample = BalancedMSELoss(prior, **kw).fit_prior(y)
    assert_close(per_sample(x, t, w[:, 0]), per_sample(x, t, w[:, :1].expand(10, 3)))


def _bmse_minibatch_mean(loss, x, y, rows, weight, batch_size):
    """Mean loss over every batch of `batch_size` of `rows`, and its gradient."""
    from itertools import combinations

    leaf = x.clone().requires_grad_(True)
    total, count = 0.0, 0
    for batch in combinations(range(len(rows)), batch_size):
        index = torch.as_tensor([rows[i] for i in batch])
        w = None if weight is None else weight[list(batch)]
        total = total + loss(leaf[index], y[index], w) / batch_size
        count += 1
    total = total / count
    total.backward()
    return total.detach(), leaf.grad


def test_balanced_mse_bmc_weight_rules_exact_per_batch_approximate_over_batches():
    rng = np.random.default_rng(0)
    k = np.array([1, 3, 1, 2, 1, 1])
    y = torch.as_tensor(rng.normal(size=6))
    x = torch.as_tensor(rng.normal(size=6))
    repeated_rows = np.repeat(np.arange(6), k)
    kw = torch.as_tensor(k, dtype=torch.float64)
    loss = BalancedMSELoss("bmc", noise_sigma=0.8, reduction="sum")
    # One batch holding all the data: the weights enter the batch prior as
    # log-weights, and the weight rules are exact.
    for a, b in zip(bmse_loss_and_grads(loss, x, y, kw),
                    bmse_loss_and_grads(loss, x, y, index=torch.as_tensor(repeated_rows)),
                    strict=True):
        assert_close(a, b, rtol=1e-10, atol=1e-10)
    w0 = kw.clone()
    w0[2] = 0.0
    keep = w0 > 0
    for a, b in zip(bmse_loss_and_grads(loss, x, y, w0),
                    bmse_loss_and_grads(loss, x[keep], y[keep], w0[keep]), strict=True):
        assert_close(a if a.ndim == 0 else a[keep], b, rtol=1e-10, atol=1e-10)
    assert_close(loss(x, y, 1e-30 * kw) / 1e-30, loss(x, y, kw))
    # Over mini-batches of 3, the loss of a sample depends on the others
    # drawn with it: the weighted data (weights normalised to mean 1, as
    # the estimators do) and the repeated data give different mean losses.
    # BNI, whose loss is per sample, is the control: exact.
    normalised = kw * len(k) / kw.sum()
    deviation = {}
    for prior in ("bmc", "bni"):
        loss = BalancedMSELoss(prior, noise_sigma=0.8, reduction="sum", n_bins=5)
        loss.fit_prior(y, kw)
        va, ga = _bmse_minibatch_mean(loss, x, y, list(range(6)), normalised, 3)
        vb, gb = _bmse_minibatch_mean(loss, x, y, list(repeated_rows), None, 3)
        deviation[prior] = (float(abs(va - vb) / abs(vb)),
                            float((ga - gb).norm() / gb.norm()))
    assert max(deviation["bni"]) < 1e-12
    # measured: 6.9% on the mean loss, 9.9% on its gradient
    assert 0.01 < deviation["bmc"][0] < 0.15
    assert 0.01 < deviation["bmc"][1] < 0.15


@pytest.mark.parametrize("prior", BMSE_PRIORS)
def test_balanced_mse_scale_is_detached_sigma_gradient_is_the_nll_s(prior):
    # l = 2 s0**2 [e**2 / (2 s**2) + log Z] with s0 = s detached: the
    # gradients are 2 s**2 times those of the bracket, the balanced NLL.
    s = 0.7
    y = bmse_targets(40)
    x, t = bmse_batch(9)
    w = torch.rand(9, generator=torch.Generator().manual_seed(2)).double()
    w[3] = 0.0
    loss = BalancedMSELoss(prior, noise_sigma=s, n_bins=7, random_state=0)
    if prior != "bmc":
        loss.fit_prior(y)
    value, grad_x, grad_log_sigma = bmse_loss_and_grads(loss, x, t, w)
    s2, e = s**2, x - t
    if prior == "bmc":
        sq = (x[:, None] - t[None, :]) ** 2
        terms = torch.log(w / w.sum())[None, :] - sq / (2 * s2)
        r = torch.softmax(terms, dim=1)
        bracket = e**2 / (2 * s2) + torch.logsumexp(terms, dim=1)
        dl_dlog_sigma = -(e**2) / s2 + (r * sq).sum(1) / s2
        dl_dx = e / s2 - (r * (x[:, None] - t[None, :])).sum(1) / s2
    elif prior == "gai":
        c, v, lw = (b.double()[0] for b in bmse_prior_buffers(loss))
        d = x[:, None] - c
        terms = lw - 0.5 * torch.log1p(v / s2) - d**2 / (2 * (s2 + v))
        r = torch.softmax(terms, dim=1)
        bracket = e**2 / (2 * s2) + torch.logsumexp(terms, dim=1)
        dterm = v / (s2 + v) + d**2 * s2 / (s2 + v) ** 2
        dl_dlog_sigma = -(e**2) / s2 + (r * dterm).sum(1)
        dl_dx = e / s2 - (r * d / (s2 + v)).sum(1)
    else:
        # uniform bins: Z = sum_b p_b sqrt(2 pi) s / h (Phi(hi) - Phi(lo))
        c, v, lw = (b.double()[0] for b in bmse_prior_buffers(loss))
        h = torch.sqrt(12 * v)
        lo, hi = (c - h / 2 - x[:, None]) / s, (c + h / 2 - x[:, None]) / s
        mass = torch.special.ndtr(hi) - torch.special.ndtr(lo)
        pdf_lo, pdf_hi = (torch.exp(-(z**2) / 2) / math.sqrt(2 * math.pi) for z in (lo, hi))
        terms = lw + math.log(math.sqrt(2 * math.pi) * s) - torch.log(h) + torch.log(mass)
        r = torch.softmax(terms, dim=1)
        bracket = e**2 / (2 * s2) + torch.logsumexp(terms, dim=1)
        dl_dlog_sigma = -(e**2) / s2 + (r * (1 + (lo * pdf_lo - hi * pdf_hi) / mass)).sum(1)
        dl_dx = e / s2 - (r * (pdf_hi - pdf_lo) / (s * mass)).sum(1)
    n = len(x)
    assert_close(value, (w * 2 * s2 * bracket).mean(), rtol=1e-6, atol=1e-6)
    assert_close(grad_x, w * 2 * s2 * dl_dx / n, rtol=1e-5, atol=1e-6)
    expected = (w * 2 * s2 * dl_dlog_sigma).mean()
    assert_close(grad_log_sigma, expected.float(), rtol=1e-5, atol=1e-6)
    # Had the factor 2 s**2 been differentiated, it would add 2 * value.
    assert abs(float(expected + 2 * value) - float(grad_log_sigma)) > 1e-2


@pytest.mark.parametrize("prior", BMSE_FITTED)
def test_balanced_mse_pushes_rare_targets_up(prior):
    # Long-tailed targets (exponential), one free prediction per bucket of
    # width 0.5. The squared error predicts each bucket's mean; Balanced MSE
    # divides out the decreasing label density, and raises the predictions
    # of the rare buckets (the head bucket, at the edge of the prior, drops).
    y = torch.empty(800).exponential_(1.0, generator=torch.Generator().manual_seed(0))
    bucket = torch.clamp(torch.floor(y / 0.5).long(), max=7)
    rare = torch.bincount(bucket) < 0.3 * len(y)
    assert rare[1:].all() and not rare[0]

    def fit(loss):
        p = torch.zeros(8, requires_grad=True)
        opt = torch.optim.LBFGS([p], max_iter=200, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-10, tolerance_change=1e-14)

        def closure():
            opt.zero_grad()
            value = loss(p[bucket], y)
            value.backward()
            return value

        opt.step(closure)
        return p.detach()

    plain = fit(torch.nn.MSELoss())
    assert_close(plain, torch.stack([y[bucket == b].mean() for b in range(8)]),
                 rtol=0, atol=1e-4)
    balanced = fit(BalancedMSELoss(prior, noise_sigma=0.5, learn_sigma=False,
                                   n_bins=30, random_state=0).fit_prior(y))
    # measured: +0.11 to +0.32 on the rare buckets, -0.7 on the head
    assert bool((balanced[rare] > plain[rare] + 0.05).all())
    assert balanced[0] < plain[0] - 0.3


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: BalancedMSELoss("lds"), r"prior must be one of 'bni', 'gai', 'bmc'; "
                                         r"got 'lds'"),
        (lambda: BalancedMSELoss(None), "prior must be one of .*got None"),
        (lambda: BalancedMSELoss(noise_sigma=0.0), r"noise_sigma must be a finite real "
                                                   r"number > 0.0; got 0.0"),
        (lambda: BalancedMSELoss(noise_sigma=-1), "noise_sigma .* got -1"),
        (lambda: BalancedMSELoss(noise_sigma=float("nan")), "noise_sigma .* got nan"),
        (lambda: BalancedMSELoss(noise_sigma=float("inf")), "noise_sigma .* got inf"),
        (lambda: BalancedMSELoss(n_bins=0), "n_bins must be an int >= 1; got 0"),
        (lambda: BalancedMSELoss(n_bins=2.5), "n_bins must be an int >= 1; got 2.5"),
        (lambda: BalancedMSELoss(n_components=0), "n_components must be an int >= 1; "
                                                  "got 0"),
        (lambda: BalancedMSELoss(reduction="avg"), "reduction must be one of"),
        (lambda: BalancedMSELoss(target_weight=[1.0, -1.0]), "target_weight must"),
    ],
)
def test_balanced_mse_bad_params_raise(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_balanced_mse_learn_sigma_must_be_a_bool():
    with pytest.raises(TypeError, match="learn_sigma must be a bool .*got 'yes'"):
        BalancedMSELoss(learn_sigma="yes")


@pytest.mark.parametrize("prior", BMSE_FITTED)
def test_balanced_mse_bad_prior_data_raise(prior):
    loss = BalancedMSELoss(prior)
    y = bmse_targets(10)
    single = r"y has a single distinct value \(2.0\) in target 0 .* at least two"
    with pytest.raises(ValueError, match=single):
        loss.fit_prior(np.full(10, 2.0))
    with pytest.raises(ValueError, match=single):  # the other value has weight 0
        loss.fit_prior([2.0, 2.0, 3.0], [1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match=r"\(5.0\) in target 1"):
        loss.fit_prior(np.stack([np.arange(4.0), np.full(4, 5.0)], axis=1))
    with pytest.raises(ValueError, match=r"sample_weight contains negative values"):
        loss.fit_prior(y, -np.ones(10))
    with pytest.raises(ValueError, match=r"sample_weight contains NaN or infinity"):
        loss.fit_prior(y, np.full(10, np.nan))
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(9,\), expected "
                                         r"\(10,\)"):
        loss.fit_prior(y, np.ones(9))
    with pytest.raises(ValueError, match="sample_weight has only zero weights"):
        loss.fit_prior(y, np.zeros(10))
    with pytest.raises(ValueError, match="sample_weight is zero for every sample of "
                                         "target 1"):
        loss.fit_prior(bmse_targets(10, 2), np.stack([np.ones(10), np.zeros(10)], 1))
    with pytest.raises(ValueError, match="y contains NaN or infinity"):
        loss.fit_prior(np.array([1.0, np.nan, 2.0]))
    with pytest.raises(ValueError, match=r"shape \(N,\) or \(N, T\); got shape "
                                         r"\(2, 2, 2\)"):
        loss.fit_prior(np.ones((2, 2, 2)))


@pytest.mark.parametrize("prior", BMSE_PRIORS)
def test_balanced_mse_bad_forward_raise(prior):
    x, t = bmse_batch(6, 2)
    loss = BalancedMSELoss(prior)
    if prior != "bmc":
        with pytest.raises(ValueError, match=r"has no label prior yet: call "
                                             r"fit_prior\(y_train, sample_weight\)"):
            loss(x, t)
        loss.fit_prior(bmse_targets(20, 3))
        with pytest.raises(ValueError, match=r"fitted on 3 target\(s\) but the target "
                                             r"has 2 column\(s\)"):
            loss(x, t)
    loss.fit_prior(bmse_targets(20, 2))
    with pytest.raises(ValueError, match="target shape .* does not match input shape"):
        loss(x, t[:, :1])
    with pytest.raises(ValueError, match=r"shape \(N,\) or \(N, T\); got shape"):
        loss(x[..., None], t[..., None])
    with pytest.raises(ValueError, match="sample_weight must contain finite non-neg"):
        loss(x, t, -torch.ones(6))
    with pytest.raises(ValueError, match="sample_weight must contain finite non-neg"):
        loss(x, t, torch.full((6,), float("nan")))
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(5,\)"):
        loss(x, t, torch.ones(5))
    loss.target_weight = torch.ones(3)
    with pytest.raises(ValueError, match="target_weight has 3 entries"):
        loss(x, t)


@pytest.mark.parametrize("prior", BMSE_PRIORS)
@pytest.mark.parametrize("sigma", [1e-12, 1e-6, 1.0, 1e6, 1e12])
def test_balanced_mse_finite_for_extreme_values(prior, sigma):
    y = np.concatenate([np.zeros(50), np.linspace(0.1, 5.0, 10)])
    loss = BalancedMSELoss(prior, noise_sigma=sigma, random_state=0)
    loss.fit_prior(y, np.logspace(-100, 0, 60))
    x = torch.tensor([1e4, -1e4, 0.0, 3.0, 1e4])
    t = torch.tensor([0.0, 0.5, -1e4, 3.0, 1e4])
    for w in (None, torch.tensor([1.0, 0.0, 2.0, 1e-30, 1.0])):
        value, grad_x, grad_s = bmse_loss_and_grads(loss, x, t, w)
        assert torch.isfinite(value) and torch.isfinite(grad_x).all()
        assert torch.isfinite(grad_s)
    # clamped to [1e-8, 1e8] in the computation
    assert loss.sigma == pytest.approx(min(max(sigma, 1e-8), 1e8), rel=1e-6)
    if prior != "bmc":
        means, variances, log_weights = bmse_prior_buffers(loss)
        assert torch.isfinite(means).all() and (variances > 0).all()
        assert not log_weights.isnan().any()


@pytest.mark.parametrize("prior", BMSE_PRIORS)
def test_balanced_mse_state_dict_round_trip_and_refit(prior):
    x, t = bmse_batch(8, 2, dtype=torch.float32)
    loss = BalancedMSELoss(prior, noise_sigma=0.5, random_state=0)
    loss.fit_prior(bmse_targets(50, 2))
    opt = torch.optim.SGD(loss.parameters(), lr=0.1)
    loss(x, t).backward()
    opt.step()
    assert loss.sigma != pytest.approx(0.5)  # learned
    state = loss.state_dict()
    assert sorted(state) == ["log_sigma", "prior_log_weights", "prior_means",
                             "prior_variances"]
    for learn_sigma in (True, False):
        fresh = BalancedMSELoss(prior, learn_sigma=learn_sigma)
        fresh.load_state_dict(state)
        assert fresh.sigma == pytest.approx(loss.sigma)
        assert_close(fresh(x, t), loss(x, t))
    # a refit replaces the prior, whatever its shape was
    loss.fit_prior(bmse_targets(30, seed=5))
    assert loss(x[:, 0], t[:, 0]).isfinite()
    if prior != "bmc":
        assert loss.prior_means.shape[0] == 1
        with pytest.raises(ValueError, match="fitted on 1 target"):
            loss(x, t)
    moved = loss.to("meta")
    assert all(b.device.type == "meta" for b in bmse_prior_buffers(moved))


def test_balanced_mse_as_the_estimators_build_it():
    # The estimators build the loss from criterion__* names, call fit_prior
    # at the start of each fit and the optimizer trains log_sigma.
    x, t = bmse_batch(16, 1, dtype=torch.float32)
    for prior in BMSE_PRIORS:
        loss = BalancedMSELoss(**{"prior": prior, "noise_sigma": 0.5,
                                  "learn_sigma": True, "random_state": 0})
        assert [name for name, _ in loss.named_parameters()] == ["log_sigma"]
        loss.fit_prior(bmse_targets(40, 1), np.ones(40)).fit_prior(t.double(), None)
        w = torch.rand(16, generator=torch.Generator().manual_seed(0))
        assert_close(loss.forward_validated(x, t, w), loss(x, t, w))
        fixed = BalancedMSELoss(prior=prior, noise_sigma=0.5, learn_sigma=False,
                                random_state=0)
        fixed.fit_prior(t)
        assert list(fixed.parameters()) == [] and "log_sigma" in fixed.state_dict()
        assert fixed.sigma == pytest.approx(0.5)
        assert_close(fixed(x, t), loss(x, t))
        fixed.reduction = "none"
        assert fixed(x, t).shape == (16, 1)
        assert fixed(x[:, 0], t[:, 0]).shape == (16,)
        assert_close(fixed(x, t).mean(), loss(x, t))
        assert f"prior={prior!r}" in repr(fixed)


@pytest.mark.cuda
@pytest.mark.parametrize("prior", BMSE_PRIORS)
def test_balanced_mse_cuda_matches_cpu(prior):
    x, t = bmse_batch(32, 2, dtype=torch.float32)
    w = torch.rand(32, generator=torch.Generator().manual_seed(0))
    loss = BalancedMSELoss(prior, noise_sigma=0.3, random_state=0)
    loss.fit_prior(bmse_targets(200, 2))
    expected = bmse_loss_and_grads(loss, x, t, w)
    loss = loss.to("cuda")
    assert loss.log_sigma.device.type == "cuda"
    assert all(b.device.type == "cuda" for b in bmse_prior_buffers(loss))
    got = bmse_loss_and_grads(loss, x.cuda(), t.cuda(), w.cuda())
    for a, b in zip(got, expected, strict=True):
        assert a.device.type == "cuda" and a.dtype == torch.float32
        assert_close(a.cpu(), b, rtol=1e-4, atol=1e-5)
    # a refit puts the prior on the loss's device
    loss.fit_prior(bmse_targets(50, 2, seed=3))
    assert all(b.device.type == "cuda" for b in bmse_prior_buffers(loss))
