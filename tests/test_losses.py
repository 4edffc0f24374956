import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from skweight.losses import (
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
