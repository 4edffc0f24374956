import copy
import pickle
import sys
import types

import pytest
import torch
from sklearn.base import clone
from torch.testing import assert_close

from skweight import augment as aug
from skweight.augment import (
    BrightnessContrast,
    Compose,
    GaussianNoise,
    RandomAffine,
    RandomFlip,
    RandomRot90,
    RandomShift,
    TorchvisionTransform,
    apply,
    apply_weighted,
    is_mask,
)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def masks(n=8, size=(12, 12), n_labels=4, seed=0):
    return torch.randint(0, n_labels, (n, *size), generator=gen(seed))


def coded(mask):
    """Images that encode their masks: channel 0 is the mask, channel 1 twice it."""
    m = mask.to(torch.float32)[:, None]
    return torch.cat([m, 2 * m], dim=1)


GEOMETRIC = {
    "flip": lambda p: RandomFlip(axes=(-2, -1), p=p),
    "rot90": lambda p: RandomRot90(p=p),
    "shift": lambda p: RandomShift(max_shift=3, p=p),
    "affine": lambda p: RandomAffine(degrees=30, scale=(0.8, 1.2), p=p),
}
INTENSITY = {
    "brightness": lambda p: BrightnessContrast(brightness=0.3, contrast=0.3, p=p),
    "noise": lambda p: GaussianNoise(std=0.2, p=p),
}
ALL = {**GEOMETRIC, **INTENSITY,
       "compose": lambda p: Compose([RandomFlip(p=p), RandomShift(2, p=p),
                                     GaussianNoise(p=p)])}


# ------------------------------------------------------------------ identity, purity


@pytest.mark.parametrize("name", ALL)
def test_p0_returns_inputs_exactly_as_new_tensors(name):
    y = masks()
    X = torch.randn(8, 2, 12, 12, generator=gen(1))
    w = torch.rand(8, 12, 12, generator=gen(2))
    Xo, yo, wo = ALL[name](0.0)(X, y, generator=gen(3), sample_weight=w)
    assert torch.equal(Xo, X) and torch.equal(yo, y) and torch.equal(wo, w)
    assert Xo.data_ptr() != X.data_ptr()
    assert Xo.dtype == X.dtype and yo.dtype == y.dtype


@pytest.mark.parametrize("name", ALL)
def test_inputs_are_not_modified(name):
    y = masks()
    X = torch.randn(8, 2, 12, 12, generator=gen(1))
    w = torch.rand(8, 12, 12, generator=gen(2))
    copies = X.clone(), y.clone(), w.clone()
    ALL[name](1.0)(X, y, generator=gen(3), sample_weight=w)
    assert all(torch.equal(a, b) for a, b in zip(copies, (X, y, w), strict=True))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("targets", [(8,), (8, 3)])
def test_per_sample_targets_and_weights_come_back_unchanged(name, targets):
    X = torch.randn(8, 1, 12, 12, generator=gen(0))
    y = torch.randn(targets, generator=gen(1))
    w = torch.rand(8, generator=gen(2))
    Xo, yo, wo = ALL[name](1.0)(X, y, generator=gen(3), sample_weight=w)
    assert yo is y and wo is w
    assert Xo.shape == X.shape


@pytest.mark.parametrize("name", ALL)
def test_samples_keep_their_order(name):
    # sample i sits at level 10 * i; no transform moves it to another level
    n = 12
    X = 10.0 * torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1) + torch.rand(
        n, 1, 16, 16, generator=gen(0)
    )
    X_out, _ = ALL[name](1.0)(X, generator=gen(1))
    assert X_out.shape[0] == n
    level = X_out.flatten(1).median(dim=1).values
    assert torch.all((level - 10.0 * torch.arange(n)).abs() < 3)


# ------------------------------------------------------------------ masks


@pytest.mark.parametrize("name", ["flip", "rot90", "shift"])
@pytest.mark.parametrize("spatial", [(12, 12), (6, 6, 6)])
def test_exact_transforms_move_masks_with_their_images(name, spatial):
    y = masks(16, spatial)
    X = coded(y)
    Xo, yo = GEOMETRIC[name](0.5)(X, y, generator=gen(4))
    assert yo.dtype == y.dtype and yo.shape == y.shape
    assert torch.equal(Xo[:, 0], yo.float())
    assert torch.equal(Xo[:, 1], 2 * yo.float())
    changed = (yo != y).flatten(1).any(dim=1)
    assert 0 < changed.sum() < 16  # some samples moved, some not


@pytest.mark.parametrize("spatial", [(12, 12), (10, 14), (6, 6, 6)])
def test_affine_nearest_moves_masks_with_their_images(spatial):
    y = masks(16, spatial)
    X = coded(y)
    t = RandomAffine(degrees=40, scale=(0.7, 1.3), interpolation="nearest")
    Xo, yo = t(X, y, generator=gen(5))
    assert torch.equal(Xo[:, 0], yo.float())


def test_affine_bilinear_mask_agrees_with_rounded_image():
    # smooth two-label blobs: bilinear image and nearest mask agree away from edges
    axis = torch.arange(32.0)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"))
    centres = torch.rand(16, 2, 1, 1, generator=gen(0)) * 12 + 10
    y = (((grid[None] - centres) ** 2).sum(1) < 49).long()
    Xo, yo = RandomAffine(degrees=30)(y.float()[:, None], y, generator=gen(1))
    agree = (Xo[:, 0].round() == yo.float()).float().mean()
    assert agree > 0.98
    assert set(yo.unique().tolist()) == {0, 1}


@pytest.mark.parametrize("name", GEOMETRIC)
def test_masks_contain_only_their_labels_and_ignore_stays_ignored(name):
    y = masks(16, n_labels=3).to(torch.int32)
    y[:, 4:8, 4:8] = -100  # ignored block inside the image
    X = coded(y.clamp(min=0))
    t = GEOMETRIC[name](1.0)
    if "fill_label" in t.get_params():
        t.set_params(fill_label=-100)
    _, yo = t(X, y, generator=gen(6))
    assert yo.dtype == torch.int32
    assert set(yo.unique().tolist()) <= {-100, 0, 1, 2}
    if name in ("flip", "rot90"):  # a permutation of the pixels
        assert torch.equal((yo == -100).sum((1, 2)), (y == -100).sum((1, 2)))


def test_affine_keeps_ignored_pixels_ignored_without_new_ones_inside():
    # with no scaling and no rotation nothing changes; with a pure 90-degree
    # turn the ignored pixels are exactly rotated
    y = masks(4, n_labels=3)
    y[:, 2:5, 6:9] = -1
    t = RandomAffine(degrees=(90, 90), scale=(1, 1), fill_label=-1)
    _, yo = t(coded(y.clamp(min=0)), y, generator=gen(0))
    assert torch.equal(yo, torch.rot90(y, 1, (-2, -1)))


def test_shift_fills_outside_with_fill_and_fill_label():
    y = torch.ones(64, 10, 10, dtype=torch.long)
    X = torch.ones(64, 1, 10, 10)
    t = RandomShift(max_shift=(2, 3), fill=-5.0, fill_label=7)
    Xo, yo, wo = t(X, y, generator=gen(0), sample_weight=torch.ones(64, 10, 10))
    outside = yo == 7
    assert torch.equal(Xo[:, 0] == -5.0, outside)
    assert torch.equal(wo == 0, outside)
    # shifts up to 2 rows and 3 columns: the filled rows and columns count so
    rows = outside.all(dim=2).sum(dim=1)
    cols = outside.all(dim=1).sum(dim=1)
    assert rows.max() == 2 and cols.max() == 3 and rows.min() == 0
    # shifts are uniform over -2..2 rows: the 5 values all appear
    signed = torch.where(outside[:, 0, :].all(dim=1), rows, -rows)
    assert set(signed.tolist()) == {-2, -1, 0, 1, 2}


def test_shift_equals_pad_and_crop():
    X = torch.randn(6, 2, 7, 9, generator=gen(0))
    t = RandomShift(max_shift=2)
    Xo, _ = t(X, generator=gen(1))
    padded = torch.nn.functional.pad(X, (2, 2, 2, 2))
    for i in range(6):  # each output is one of the 25 crops of the padded image
        crops = [padded[i, :, a:a + 7, b:b + 9] for a in range(5) for b in range(5)]
        assert any(torch.equal(Xo[i], c) for c in crops)


def test_default_fill_label_is_zero():
    y = torch.full((32, 8, 8), 2)
    _, yo = RandomShift(3)(torch.zeros(32, 1, 8, 8), y, generator=gen(0))
    assert set(yo.unique().tolist()) == {0, 2}


def test_fill_label_must_fit_the_mask_dtype():
    y = torch.zeros(2, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"fill_label=-1 does not fit.*uint8"):
        RandomShift(fill_label=-1)(torch.zeros(2, 1, 8, 8), y)


# ------------------------------------------------------------------ exact geometry


def test_rot90_matches_torch_rot90_per_sample():
    X = torch.randn(64, 2, 6, 6, generator=gen(0))
    Xo, _ = RandomRot90(p=1.0)(X, generator=gen(1))
    ks = []
    for i in range(64):
        k = [k for k in (1, 2, 3) if torch.equal(Xo[i], torch.rot90(X[i], k, (-2, -1)))]
        assert len(k) == 1
        ks.append(k[0])
    counts = torch.bincount(torch.tensor(ks), minlength=4)[1:]
    assert counts.min() >= 10  # 1, 2 and 3 quarter turns, each about 21 times


def test_rot90_p_is_the_fraction_rotated():
    X = torch.randn(400, 1, 4, 4, generator=gen(0))
    Xo, _ = RandomRot90()(X, generator=gen(1))
    rotated = (Xo != X).flatten(1).any(dim=1).float().mean()
    assert abs(rotated - 0.75) < 0.07


@pytest.mark.parametrize("axes", [(-2, -1), (-3, -1), (-1, -3), (-3, -2)])
def test_affine_quarter_turn_equals_rot90_on_volumes(axes):
    V = torch.randn(3, 2, 5, 5, 5, generator=gen(0))
    M = torch.randint(0, 3, (3, 5, 5, 5), generator=gen(1))
    t = RandomAffine(degrees=(90, 90), scale=(1, 1), axes=axes)
    Vo, Mo = t(V, M, generator=gen(2))
    assert_close(Vo, torch.rot90(V, 1, axes), atol=1e-5, rtol=0)
    assert torch.equal(Mo, torch.rot90(M, 1, axes))


def test_affine_rotation_is_rigid_on_non_square_images():
    X = torch.zeros(1, 1, 8, 16)
    X[0, 0, 3:5, 2:14] = 1  # a horizontal bar 2 x 12
    Xo, _ = RandomAffine(degrees=(90, 90), scale=(1, 1), interpolation="nearest")(X)
    # now vertical, 2 wide, clipped by the 8 rows
    expected = torch.tensor([0.0] * 7 + [8.0, 8.0] + [0.0] * 7)
    assert torch.equal(Xo[0, 0].sum(dim=0), expected)


@pytest.mark.parametrize("zoom", [0.5, 2.0])
def test_affine_scale_changes_area_by_its_square(zoom):
    y = torch.zeros(1, 64, 64, dtype=torch.long)
    y[0, 24:40, 24:40] = 1  # 16 x 16 square at the centre
    _, yo = RandomAffine(degrees=0, scale=(zoom, zoom))(y.float()[:, None], y)
    assert yo.sum().item() == pytest.approx(256 * zoom**2, rel=0.05)


def test_affine_fill_value_outside():
    X = torch.ones(2, 1, 16, 16)
    Xo, _ = RandomAffine(degrees=(45, 45), scale=(1, 1), fill=3.0)(X)
    assert Xo[0, 0, 0, 0] == pytest.approx(3.0)  # corner comes from outside
    assert Xo[0, 0, 8, 8] == pytest.approx(1.0)


def test_volume_flip_along_depth():
    V = torch.randn(40, 1, 4, 5, 6, generator=gen(0))
    M = torch.randint(0, 5, (40, 4, 5, 6), generator=gen(1))
    Vo, Mo = RandomFlip(axes=-3)(V, M, generator=gen(2))
    flipped = torch.tensor([torch.equal(Vo[i], V[i].flip(-3)) for i in range(40)])
    kept = torch.tensor([torch.equal(Vo[i], V[i]) for i in range(40)])
    assert torch.all(flipped ^ kept) and 10 < flipped.sum() < 30
    assert torch.equal(Mo[flipped], M[flipped].flip(-3))
    assert torch.equal(Mo[kept], M[kept])


def test_volume_shift_moves_voxels_in_three_axes():
    V = torch.zeros(1, 1, 9, 9, 9)
    V[0, 0, 4, 4, 4] = 1.0
    Vo, _ = RandomShift(max_shift=(1, 2, 3))(V.repeat(200, 1, 1, 1, 1), generator=gen(0))
    where = Vo[:, 0].flatten(1).argmax(dim=1)
    d, h, w = where // 81 - 4, (where // 9) % 9 - 4, where % 9 - 4
    assert (d.abs().max(), h.abs().max(), w.abs().max()) == (1, 2, 3)


# ------------------------------------------------------------------ randomness


@pytest.mark.parametrize("name", ALL)
def test_seeded_generator_repeats_and_seeds_differ(name):
    y = masks()
    X = torch.randn(8, 2, 12, 12, generator=gen(1))
    t = ALL[name](0.5)
    a = t(X, y, generator=gen(7))
    b = t(X, y, generator=gen(7))
    c = t(X, y, generator=gen(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_none_generator_uses_torch_global_rng():
    X = torch.randn(16, 1, 8, 8, generator=gen(0))
    t = Compose([RandomFlip(), GaussianNoise()])
    torch.manual_seed(3)
    a, _ = t(X)
    torch.manual_seed(3)
    b, _ = t(X)
    assert torch.equal(a, b)


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_draws_do_not_depend_on_p(p):
    # changing one transform's p leaves the next transform's draws alone (the
    # flips of a blank batch change nothing, so the noise must be identical)
    X = torch.zeros(8, 1, 8, 8)
    reference, _ = Compose([RandomFlip(p=0.5), GaussianNoise()])(X, generator=gen(0))
    out, _ = Compose([RandomFlip(p=p), GaussianNoise()])(X, generator=gen(0))
    assert torch.equal(out, reference)


def test_flip_p_half_flips_about_half_the_samples():
    X = torch.randn(400, 1, 5, 5, generator=gen(0))
    Xo, _ = RandomFlip(axes=(-2, -1), p=0.5)(X, generator=gen(1))
    lr = torch.tensor([torch.equal(Xo[i], X[i].flip(-1)) or torch.equal(Xo[i], X[i].flip(
        -1, -2)) for i in range(400)])
    ud = torch.tensor([torch.equal(Xo[i], X[i].flip(-2)) or torch.equal(Xo[i], X[i].flip(
        -1, -2)) for i in range(400)])
    # 400 samples: the binomial standard deviation of a fraction is 0.025
    assert abs(lr.float().mean() - 0.5) < 0.1 and abs(ud.float().mean() - 0.5) < 0.1
    # the two axes are decided independently
    assert abs((lr & ud).float().mean() - 0.25) < 0.08


def test_generator_on_another_device_or_not_a_generator():
    X = torch.zeros(2, 1, 4, 4)
    with pytest.raises(TypeError, match="generator must be None or a torch.Generator"):
        RandomFlip()(X, generator=0)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="generator is on cuda"):
            RandomFlip()(X, generator=torch.Generator(device="cuda"))


# ------------------------------------------------------------------ intensity statistics


def test_gaussian_noise_statistics():
    X = torch.randn(64, 2, 16, 16, generator=gen(0))
    Xo, _ = GaussianNoise(std=0.2)(X, generator=gen(1))
    change = (Xo - X).double()
    assert abs(change.mean().item()) < 0.005  # 32768 values: se 0.0011
    assert change.std().item() == pytest.approx(0.2, rel=0.02)


def test_gaussian_noise_p_half_and_dtype():
    X = torch.zeros(400, 1, 4, 4, dtype=torch.float64)
    Xo, _ = GaussianNoise(std=1.0, p=0.5)(X, generator=gen(0))
    assert Xo.dtype == torch.float64
    noisy = (Xo != 0).flatten(1).any(dim=1).float().mean()
    assert abs(noisy - 0.5) < 0.1


def test_brightness_is_a_uniform_offset_per_sample():
    X = torch.rand(2000, 3, 4, 4, generator=gen(0))
    Xo, _ = BrightnessContrast(brightness=0.3, contrast=0.0)(X, generator=gen(1))
    change = (Xo - X).double()
    per_sample = change.flatten(1)
    offset = per_sample[:, 0]
    # the same offset for every pixel and channel of a sample
    assert_close(per_sample, offset[:, None].expand_as(per_sample), atol=1e-6, rtol=0)
    assert offset.abs().max() <= 0.3 + 1e-6
    assert abs(offset.mean().item()) < 0.015  # se 0.3 / sqrt(3 * 2000) = 0.004
    assert offset.std().item() == pytest.approx(0.3 / 3**0.5, rel=0.05)


def test_contrast_scales_about_the_channel_means():
    X = torch.randn(500, 2, 8, 8, generator=gen(0)) * torch.tensor([1.0, 3.0]).view(
        1, 2, 1, 1) + torch.tensor([5.0, -2.0]).view(1, 2, 1, 1)
    Xo, _ = BrightnessContrast(brightness=0.0, contrast=0.4)(X, generator=gen(1))
    assert_close(Xo.mean(dim=(2, 3)), X.mean(dim=(2, 3)), atol=1e-4, rtol=0)
    ratio = Xo.std(dim=(2, 3)) / X.std(dim=(2, 3))
    # one factor per sample, shared by the channels, uniform in [0.6, 1.4]
    assert_close(ratio[:, 0], ratio[:, 1], atol=1e-4, rtol=0)
    assert ratio.min() >= 0.6 - 1e-4 and ratio.max() <= 1.4 + 1e-4
    assert ratio[:, 0].mean().item() == pytest.approx(1.0, abs=0.03)
    assert ratio[:, 0].std().item() == pytest.approx(0.4 / 3**0.5, rel=0.1)


def test_intensity_transforms_leave_masks_alone():
    y = masks()
    X = coded(y)
    for t in INTENSITY.values():
        _, yo = t(1.0)(X, y, generator=gen(0))
        assert torch.equal(yo, y)


# ------------------------------------------------------------------ weights


@pytest.mark.parametrize("name", GEOMETRIC)
def test_weight_maps_move_with_the_masks(name):
    y = masks(16)
    w = (y.double() + 1) / 4  # weight encodes the label: 0.25 .. 1.0
    t = GEOMETRIC[name](1.0)
    X = coded(y)
    if name == "affine":
        t.set_params(interpolation="nearest")
    Xo, yo, wo = apply_weighted(t, X, y, w, generator=gen(0))
    assert wo.dtype == torch.float64
    inside = wo > 0
    assert torch.equal(wo[inside], (yo[inside].double() + 1) / 4)
    # pixels from outside the image have weight 0 and the fill label 0
    assert torch.all(yo[~inside] == 0)
    if name in ("flip", "rot90"):
        assert bool(inside.all())


def test_apply_weighted_passes_per_sample_weights_through():
    X = torch.randn(4, 1, 8, 8, generator=gen(0))
    w = torch.tensor([1.0, 0.0, 2.0, 3.0])
    for t in (RandomShift(), lambda X, y: (X.flip(-1), y)):
        _, _, wo = apply_weighted(t, X, None, w)
        assert wo is w
    assert apply_weighted(RandomShift(), X, None, None)[2] is None


def test_apply_weighted_refuses_pixel_weights_for_plain_callables():
    X = torch.randn(4, 1, 8, 8)
    with pytest.raises(TypeError, match="cannot take per-pixel sample weights"):
        apply_weighted(lambda X, y: (X.flip(-1), y), X, None, torch.ones(4, 8, 8))

    def moves_weights(X, y, sample_weight):
        return X.flip(-1), y, sample_weight.flip(-1)

    w = torch.rand(4, 8, 8, generator=gen(0))
    _, _, wo = apply_weighted(moves_weights, X, None, w)
    assert torch.equal(wo, w.flip(-1))


def test_sample_weight_shape_is_checked():
    X = torch.zeros(4, 1, 8, 8)
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(4, 8\): expected"):
        RandomFlip()(X, sample_weight=torch.ones(4, 8))


# ------------------------------------------------------------------ apply and callables


def test_apply_calls_plain_callables_without_generator():
    calls = []

    def plain(X, y):
        calls.append("plain")
        return X + 1, y

    def seeded(X, y, generator=None):
        calls.append(generator)
        return X, y

    X = torch.zeros(2, 1, 4, 4)
    g = gen(0)
    assert torch.equal(apply(plain, X, None, g)[0], X + 1)
    apply(seeded, X, None, g)
    assert calls == ["plain", g]
    out = apply(Compose([plain, seeded, RandomFlip()]), X, None, g)
    assert torch.equal(out[0], X + 1) and calls[-1] is g


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda X, y: X, "must return a tuple"),
        (lambda X, y: (X[:1], y), "returned 1 images for 2"),
        (lambda X, y: (X, y[:, :3]), "no longer match"),
        (lambda X, y: (X, None), "returned y=None"),
    ],
)
def test_apply_checks_what_callables_return(bad, message):
    X = torch.zeros(2, 1, 4, 4)
    y = torch.zeros(2, 4, 4, dtype=torch.long)
    with pytest.raises((TypeError, ValueError), match=message):
        apply(bad, X, y)


def test_is_mask_rule():
    X = torch.zeros(3, 2, 5, 6)
    assert is_mask(X, torch.zeros(3, 5, 6))
    assert not is_mask(X, torch.zeros(3))
    assert not is_mask(X, torch.zeros(3, 6))
    assert not is_mask(X, None)
    assert is_mask(torch.zeros(3, 1, 4, 5, 6), torch.zeros(3, 4, 5, 6))


@pytest.mark.parametrize(
    "X, y, error, message",
    [
        ("not a tensor", None, TypeError, "X must be a torch.Tensor"),
        (torch.zeros(2, 4, 4), None, ValueError, r"X must have shape \(N, C, H, W\)"),
        (torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 4), TypeError, "integer labels"),
        (torch.zeros(2, 1, 4, 4), torch.zeros(3), ValueError, "X has 2 samples"),
        (torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4, dtype=torch.long), ValueError,
         r"expected per-sample targets"),
    ],
)
def test_batch_errors(X, y, error, message):
    with pytest.raises(error, match=message):
        RandomFlip()(X, y)


def test_call_time_errors():
    X = torch.zeros(2, 1, 4, 6)
    with pytest.raises(ValueError, match=r"axes=\(-3,\) includes -3 \(depth\)"):
        RandomFlip(axes=(-3,))(X)
    with pytest.raises(ValueError, match="RandomRot90 needs a square plane"):
        RandomRot90()(X)
    with pytest.raises(ValueError, match="gives 3 axes, but X"):
        RandomShift(max_shift=(1, 1, 1))(X)
    with pytest.raises(TypeError, match="GaussianNoise needs floating-point images"):
        GaussianNoise()(X.long())
    t = RandomFlip()
    t.p = 2.0  # set directly: caught at the next call
    with pytest.raises(ValueError, match="p must be a finite real number in"):
        t(X)


# ------------------------------------------------------------------ parameters


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: RandomFlip(p=1.5), ValueError, r"p must be a finite real number in \[0"),
        (lambda: RandomFlip(p="half"), ValueError, "got 'half'"),
        (lambda: RandomFlip(axes=(0,)), ValueError, "axes must be an int or a tuple"),
        (lambda: RandomFlip(axes=()), ValueError, "got ()"),
        (lambda: RandomFlip(axes=(-1, -1)), ValueError, "distinct"),
        (lambda: RandomRot90(axes=(-1,)), ValueError, "axes must be a pair"),
        (lambda: RandomShift(max_shift=-1), ValueError, "max_shift must be an int >= 0"),
        (lambda: RandomShift(max_shift=1.5), ValueError, "got 1.5"),
        (lambda: RandomShift(fill=float("nan")), ValueError, "fill must be a finite"),
        (lambda: RandomShift(fill_label=1.5), TypeError, "fill_label must be None or an"),
        (lambda: RandomShift(fill_label=True), TypeError, "got True"),
        (lambda: RandomAffine(degrees=-1), ValueError, "degrees must be a finite real"),
        (lambda: RandomAffine(degrees=(5, 1)), ValueError, "low <= high"),
        (lambda: RandomAffine(scale=(0, 1)), ValueError, r"scale\[0\] must be .* > 0"),
        (lambda: RandomAffine(scale=1.1), ValueError, r"scale must be a pair \(low, hi"),
        (lambda: RandomAffine(interpolation="cubic"), ValueError, "interpolation must be"),
        (lambda: BrightnessContrast(brightness=-1), ValueError, "brightness must be"),
        (lambda: BrightnessContrast(contrast=1.5), ValueError, r"contrast .* \[0.0, 1.0\]"),
        (lambda: GaussianNoise(std=-0.1), ValueError, "std must be a finite real"),
        (lambda: Compose(RandomFlip()), TypeError, "transforms must be a list"),
        (lambda: Compose([RandomFlip(), 3]), TypeError, r"transforms\[1\] is not callable"),
        (lambda: TorchvisionTransform(3), TypeError, "transform must be a torchvision"),
        (lambda: TorchvisionTransform(RandomFlip(), per_sample=1), TypeError, "per_sample"),
    ],
)
def test_parameter_errors(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_repr():
    assert repr(RandomFlip()) == "RandomFlip(axes=(-1,), p=0.5)"
    assert repr(GaussianNoise(std=0.1)) == "GaussianNoise(std=0.1, p=1.0)"
    assert repr(Compose([RandomRot90(), BrightnessContrast()])) == (
        "Compose([\n"
        "    RandomRot90(axes=(-2, -1), p=0.75),\n"
        "    BrightnessContrast(brightness=0.1, contrast=0.1, p=1.0),\n"
        "])"
    )


def test_get_set_params_and_clone():
    t = RandomAffine(degrees=5)
    assert t.get_params()["degrees"] == 5
    assert t.set_params(degrees=20, p=0.5) is t and (t.degrees, t.p) == (20, 0.5)
    with pytest.raises(ValueError, match="Invalid parameter 'angle' for RandomAffine"):
        t.set_params(angle=3)
    with pytest.raises(ValueError, match="p must be"):
        t.set_params(p=-1)
    wrapped = TorchvisionTransform(RandomShift(max_shift=2))
    assert wrapped.get_params()["transform__max_shift"] == 2
    wrapped.set_params(transform__max_shift=1)
    assert wrapped.transform.max_shift == 1
    composed = Compose([RandomFlip(p=0.3), GaussianNoise(std=0.2)])
    cloned = clone(composed)
    assert cloned is not composed and cloned.transforms[0] is not composed.transforms[0]
    assert repr(cloned) == repr(composed)


@pytest.mark.parametrize("copier", [lambda t: pickle.loads(pickle.dumps(t)), copy.deepcopy])
def test_pickle_round_trip_gives_the_same_augmentation(copier):
    t = Compose([RandomFlip(axes=(-2, -1)), RandomAffine(fill_label=-1),
                 BrightnessContrast(), GaussianNoise()])
    restored = copier(t)
    assert repr(restored) == repr(t)
    y = masks()
    X = torch.randn(8, 2, 12, 12, generator=gen(0))
    a = t(X, y, generator=gen(1))
    b = restored(X, y, generator=gen(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# ------------------------------------------------------------------ torchvision stand-in


class _FakeTVTensor(torch.Tensor):
    """As torchvision's tv_tensors: a Tensor subclass made from a tensor, whose
    operations (indexing, flips, ...) return plain tensors."""

    def __new__(cls, data):
        return torch.as_tensor(data).as_subclass(cls)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **(kwargs or {}))


def _fake_torchvision(monkeypatch):
    """Install a stand-in for torchvision with v2's calling convention.

    Like a real v2 transform, ``FakeHorizontalFlip`` takes any number of
    inputs, returns them in the same structure (a single input comes back
    alone), draws one decision per call from torch's global RNG, transforms
    Image, Video and Mask inputs (re-wrapping the results in their types),
    flips along the last axis (width) and passes plain tensors through.
    """
    tv_tensors = types.ModuleType("torchvision.tv_tensors")
    for name in ("Image", "Video", "Mask"):
        setattr(tv_tensors, name, type(name, (_FakeTVTensor,), {}))
    package = types.ModuleType("torchvision")
    package.tv_tensors = tv_tensors
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.tv_tensors", tv_tensors)

    class FakeHorizontalFlip:
        def __init__(self, p=0.5):
            self.p = p
            self.seen = []

        def __call__(self, *inputs):
            self.seen.append(tuple((type(x).__name__, tuple(x.shape)) for x in inputs))
            flip = torch.rand(()) < self.p
            kinds = (tv_tensors.Image, tv_tensors.Video, tv_tensors.Mask)
            out = tuple(
                type(x)(x.flip(-1)) if flip and isinstance(x, kinds) else x for x in inputs
            )
            return out[0] if len(out) == 1 else out

    FakeHorizontalFlip.__module__ = "torchvision.transforms.v2._geometry"
    return FakeHorizontalFlip


def _flipped(Xo, X):
    return torch.tensor([torch.equal(Xo[i], X[i].flip(-1)) for i in range(len(X))])


def test_torchvision_per_sample_moves_masks_and_repeats(monkeypatch):
    FakeFlip = _fake_torchvision(monkeypatch)
    y = masks(64)
    X = coded(y)
    t = TorchvisionTransform(FakeFlip())
    state = torch.get_rng_state()
    Xo, yo = t(X, y, generator=gen(0))
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is untouched
    assert t.transform.seen[0] == (("Image", (2, 12, 12)), ("Mask", (12, 12)))
    assert torch.equal(Xo[:, 0], yo.float()) and type(Xo) is torch.Tensor
    flipped = _flipped(Xo, X)
    assert 16 < flipped.sum() < 48  # each sample decided on its own
    again = t(X, y, generator=gen(0))
    assert torch.equal(again[0], Xo) and torch.equal(again[1], yo)
    assert not torch.equal(t(X, y, generator=gen(1))[0], Xo)


def test_torchvision_whole_batch_and_volumes(monkeypatch):
    FakeFlip = _fake_torchvision(monkeypatch)
    V = torch.randn(6, 2, 3, 4, 5, generator=gen(0))
    M = torch.randint(0, 3, (6, 3, 4, 5), generator=gen(1))
    t = TorchvisionTransform(FakeFlip(p=1.0), per_sample=False)
    Vo, Mo = t(V, M, generator=gen(2))
    assert t.transform.seen == [(("Video", (6, 3, 2, 4, 5)), ("Mask", (6, 3, 4, 5)))]
    assert torch.equal(Vo, V.flip(-1)) and torch.equal(Mo, M.flip(-1))
    each = TorchvisionTransform(FakeFlip(p=1.0))
    Vo, Mo = each(V, M, generator=gen(2))
    assert each.transform.seen[0] == (("Video", (3, 2, 4, 5)), ("Mask", (3, 4, 5)))
    assert torch.equal(Vo, V.flip(-1)) and torch.equal(Mo, M.flip(-1))
    half = TorchvisionTransform(FakeFlip(p=0.5), per_sample=False)
    decisions = {
        tuple(_flipped(half(V, generator=gen(s))[0], V).tolist()) for s in range(12)
    }
    assert decisions == {(True,) * 6, (False,) * 6}  # all samples alike


def test_apply_and_compose_wrap_torchvision_v2(monkeypatch):
    FakeFlip = _fake_torchvision(monkeypatch)
    y = masks(32)
    X = coded(y)
    targets = torch.arange(32)
    Xo, yo = apply(FakeFlip(), X, y, gen(0))
    assert torch.equal(Xo[:, 0], yo.float()) and 0 < _flipped(Xo, X).sum() < 32
    Xo, to = apply(Compose([FakeFlip(), RandomShift(1)]), X, targets, gen(0))
    assert to is targets
    with pytest.raises(TypeError, match="cannot take per-pixel sample weights"):
        apply_weighted(FakeFlip(), X, y, torch.ones(32, 12, 12))


def test_torchvision_v1_is_refused():
    class Old:
        def __call__(self, x):
            return x

    Old.__module__ = "torchvision.transforms.transforms"
    with pytest.raises(TypeError, match="v1.*cannot move a mask"):
        apply(Old(), torch.zeros(2, 1, 4, 4))


def test_torchvision_missing_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.tv_tensors", None)
    with pytest.raises(ImportError, match="TorchvisionTransform needs torchvision"):
        TorchvisionTransform(lambda x: x)(torch.zeros(2, 1, 4, 4))


# ------------------------------------------------------------------ CUDA


@pytest.mark.cuda
@pytest.mark.parametrize("name", ALL)
def test_cuda_stays_on_device_repeats_and_never_syncs(name):
    device = torch.device("cuda")
    y = masks(16, (6, 6, 6)).to(device)
    X = coded(y)
    w = torch.rand(16, 6, 6, 6, device=device)
    t = ALL[name](0.5)
    first = t(X, y, generator=torch.Generator(device).manual_seed(0), sample_weight=w)
    torch.cuda.set_sync_debug_mode("error")
    try:
        again = t(X, y, generator=torch.Generator(device).manual_seed(0), sample_weight=w)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for a, b in zip(first, again, strict=True):
        assert a.device.type == "cuda" and torch.equal(a, b)
    if name in GEOMETRIC and name != "affine":
        assert torch.equal(first[0][:, 0], first[1].float())


def test_module_exports():
    assert set(aug.__all__) >= {"RandomFlip", "RandomRot90", "RandomShift", "RandomAffine",
                                "BrightnessContrast", "GaussianNoise", "Compose",
                                "TorchvisionTransform", "apply", "apply_weighted"}
