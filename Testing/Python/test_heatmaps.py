"""Landmark geometry (LPS mm <-> pixel index) and heatmaps: encoding, decoding, losses."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from DiffusionSegLib.landmarks import (
    decode_heatmaps,
    encode_heatmaps,
    heatmap_mse,
    heatmaps_as_logits,
    index_to_physical,
    physical_to_index,
    points_outside,
    sigma_mm_to_px,
    spatial_softmax_ce,
)


def _rotation(dims: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(dims, dims)))
    return q


def _image(dims: int) -> sitk.Image:
    """Non-unit anisotropic spacing, non-zero origin, oblique direction."""
    img = sitk.Image([7, 5, 4][:dims], sitk.sitkUInt8)
    img.SetSpacing([0.7, 1.3, 2.5][:dims])
    img.SetOrigin([-12.5, 30.25, 4.0][:dims])
    img.SetDirection(_rotation(dims, dims).ravel().tolist())
    return img


# ----------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("dims", [2, 3])
def test_index_mapping_equals_simpleitk(dims):
    img = _image(dims)
    rng = np.random.default_rng(1)
    idx = rng.uniform(-1, 6, size=(6, dims))  # numpy order, some outside the image
    pts = index_to_physical(img, idx)
    for i, p in zip(idx, pts):
        expected = img.TransformContinuousIndexToPhysicalPoint(i[::-1].tolist())
        np.testing.assert_allclose(p[:dims], expected, atol=1e-9)
        if dims == 2:
            assert p[2] == 0.0
        np.testing.assert_allclose(img.TransformPhysicalPointToContinuousIndex(p[:dims].tolist()), i[::-1], atol=1e-9)
    np.testing.assert_allclose(physical_to_index(img, pts), idx, atol=1e-9)


def test_2d_ignores_z_and_keeps_missing_rows():
    img = _image(2)
    pts = np.array([[1.0, 2.0, 0.0], [1.0, 2.0, 55.0], [np.nan] * 3])
    idx = physical_to_index(img, pts)
    np.testing.assert_allclose(idx[0], idx[1])
    assert np.isnan(idx[2]).all()
    back = index_to_physical(img, idx)
    np.testing.assert_allclose(back[0], [1.0, 2.0, 0.0], atol=1e-9)
    assert np.isnan(back[2]).all()
    assert points_outside(img, pts[2:]) == [False]  # missing is not "outside"


def test_isbi_convention():
    """A 2D NRRD with spacing 0.4 and origin 0.15: [x, y, 0] is column (x-0.15)/0.4, row (y-0.15)/0.4."""
    img = sitk.Image(483, 600, sitk.sitkUInt8)
    img.SetSpacing((0.4, 0.4))
    img.SetOrigin((0.15, 0.15))
    pts = np.array([[50.35, 120.95, 0.0], [0.15, 0.15, 0.0]])
    idx = physical_to_index(img, pts)
    np.testing.assert_allclose(idx, [[(120.95 - 0.15) / 0.4, (50.35 - 0.15) / 0.4], [0.0, 0.0]], atol=1e-9)
    np.testing.assert_allclose(index_to_physical(img, idx), pts, atol=1e-9)


@pytest.mark.parametrize("dims", [2, 3])
def test_points_outside(dims):
    img = sitk.Image([10, 8, 6][:dims], sitk.sitkUInt8)
    img.SetSpacing([2.0, 3.0, 4.0][:dims])
    img.SetOrigin([1.0, -1.0, 5.0][:dims])
    inside = index_to_physical(img, np.array([[0.0] * dims, [s - 1 for s in img.GetSize()[::-1]],
                                              [-0.49] * dims]))
    outside = index_to_physical(img, np.array([[-0.6] + [0.0] * (dims - 1), [0.0] * (dims - 1) + [img.GetSize()[0] - 0.4]]))
    assert points_outside(img, np.vstack([inside, outside])) == [False, False, False, True, True]


# ----------------------------------------------------------------------------- encoding


def test_sigma_mm_to_px_is_numpy_order():
    assert sigma_mm_to_px(2.0, (0.5, 1.0, 4.0)) == (0.5, 2.0, 4.0)
    assert sigma_mm_to_px((1.0, 2.0), (0.5, 0.5)) == (4.0, 2.0)
    with pytest.raises(ValueError):
        sigma_mm_to_px(0.0, (1.0, 1.0))


def test_encode_shape_peak_and_mask():
    idx = np.array([[3.0, 4.0], [np.nan, np.nan], [2.2, 9.4], [-3.0, 2.0]])
    h, mask = encode_heatmaps(idx, (8, 10), (1.0, 2.0))
    assert h.shape == (4, 8, 10) and h.dtype == np.float32
    assert mask.tolist() == [True, False, True, False]  # missing, and outside the array
    assert h[0, 3, 4] == 1.0 and h[0].max() == 1.0
    assert not h[1].any() and not h[3].any()
    # anisotropic: one pixel along the row axis (sigma 1) falls off more than along columns (sigma 2)
    np.testing.assert_allclose([h[0, 4, 4], h[0, 3, 5]], [np.exp(-0.5), np.exp(-0.125)], rtol=1e-6)


# ----------------------------------------------------------------------------- decoding


CASES = [((40, 48), 1.5), ((40, 48), (1.0, 2.5)), ((16, 20, 24), 1.2), ((16, 20, 24), (1.0, 1.5, 2.0))]


def _random_points(shape, n, seed):
    return np.random.default_rng(seed).uniform(3, np.array(shape) - 4, size=(n, len(shape)))


@pytest.mark.parametrize("shape,sigma", CASES)
def test_encode_decode_round_trip(shape, sigma):
    idx = _random_points(shape, 8, seed=len(shape))
    h, _ = encode_heatmaps(idx, shape, sigma)
    logits = heatmaps_as_logits(torch.from_numpy(h)[None])
    coords, conf = decode_heatmaps(logits, radius=4)
    assert coords.shape == (1, 8, len(shape)) and conf.shape == (1, 8)
    err = np.linalg.norm(coords[0].numpy() - idx, axis=1)
    assert err.max() < 0.01, err
    assert ((conf > 0.5) & (conf <= 1.0)).all()


def test_quadratic_beats_softargmax():
    """The paraboloid fit is exact on clean maps and no worse on noisy ones; the soft-argmax
    is pulled towards the peak pixel by the window's truncation of the tails."""
    shape, sigma = (48, 48), 2.0
    idx = _random_points(shape, 30, seed=3)
    h, _ = encode_heatmaps(idx, shape, sigma)
    clean = heatmaps_as_logits(torch.from_numpy(h)[None])
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    errors = {}
    for name, logits in (("clean", clean), ("noisy", noisy)):
        for method in ("quadratic", "softargmax"):
            coords, _ = decode_heatmaps(logits, radius=3, method=method)
            errors[name, method] = np.linalg.norm(coords[0].numpy() - idx, axis=1).mean()
    assert errors["clean", "quadratic"] < 1e-3 < 0.05 < errors["clean", "softargmax"]
    assert errors["noisy", "quadratic"] < 0.1
    assert errors["noisy", "quadratic"] < errors["noisy", "softargmax"]


@pytest.mark.parametrize("shape,sigma", [((40, 48), 1.5), ((16, 20, 24), 1.5)])
def test_decode_noisy_logits(shape, sigma):
    """Logits as a cross-entropy network makes them: log-Gaussian near the peak, a floor
    elsewhere, plus noise."""
    idx = _random_points(shape, 6, seed=7)
    h, _ = encode_heatmaps(idx, shape, sigma)
    logits = 5.0 + heatmaps_as_logits(torch.from_numpy(h)[None], floor=1e-3)
    logits = logits + 0.2 * torch.randn(logits.shape, generator=torch.Generator().manual_seed(1))
    coords, conf = decode_heatmaps(logits, radius=3)
    err = np.linalg.norm(coords[0].numpy() - idx, axis=1)
    assert err.max() < 0.5, err
    # A flat map (the network has no idea) is decoded with low confidence.
    flat = torch.zeros((1, 1) + shape)
    assert decode_heatmaps(flat, radius=3)[1].item() < 0.1


def test_decode_at_the_border_and_batches():
    shape = (12, 14)
    idx = np.array([[0.0, 13.0], [0.3, 6.6], [11.0, 0.2]])
    h, _ = encode_heatmaps(idx, shape, 1.0)
    logits = heatmaps_as_logits(torch.from_numpy(np.stack([h, h[::-1].copy()])))
    coords, conf = decode_heatmaps(logits)
    assert coords.shape == (2, 3, 2)
    np.testing.assert_allclose(coords[0].numpy(), idx, atol=0.05)
    np.testing.assert_allclose(coords[1].numpy(), idx[::-1], atol=0.05)


# ----------------------------------------------------------------------------- losses


def _targets(shape, idx, sigma=1.5):
    h, mask = encode_heatmaps(idx, shape, sigma)
    return torch.from_numpy(h)[None], torch.from_numpy(mask)[None]


@pytest.mark.parametrize("loss", [spatial_softmax_ce, heatmap_mse])
@pytest.mark.parametrize("shape", [(24, 28), (10, 12, 14)])
def test_loss_prefers_the_right_heatmap(loss, shape):
    idx = _random_points(shape, 3, seed=2)
    targets, mask = _targets(shape, idx)
    shifted, _ = _targets(shape, idx + 2.0)
    if loss is spatial_softmax_ce:
        right, wrong = heatmaps_as_logits(targets), heatmaps_as_logits(shifted)
    else:
        right, wrong = targets, shifted
    assert loss(right, targets, mask) < loss(wrong, targets, mask)


@pytest.mark.parametrize("loss", [spatial_softmax_ce, heatmap_mse])
def test_loss_ignores_masked_landmarks(loss):
    shape = (20, 22)
    idx = np.array([[5.0, 6.0], [np.nan, np.nan], [12.5, 15.2]])
    targets, mask = _targets(shape, idx)
    assert mask.tolist() == [[True, False, True]]
    logits = torch.randn((1, 3) + shape, generator=torch.Generator().manual_seed(0), requires_grad=True)
    value = loss(logits, targets, mask)
    value.backward()
    assert logits.grad[0, 1].abs().max() == 0.0
    assert logits.grad[0, 0].abs().max() > 0.0 and logits.grad[0, 2].abs().max() > 0.0
    # the masked channel's content does not change the loss
    other = logits.detach().clone()
    other[0, 1] = 100.0 * torch.rand(shape)
    assert torch.allclose(loss(other, targets, mask), value.detach())
    # nothing present: zero loss, still differentiable
    none = loss(logits, targets, torch.zeros_like(mask))
    assert none.item() == 0.0 and none.requires_grad


def test_ce_equals_formula():
    shape = (6, 7)
    targets, mask = _targets(shape, np.array([[2.0, 3.0]]))
    logits = torch.randn((1, 1) + shape, generator=torch.Generator().manual_seed(3))
    q = targets.reshape(-1) / targets.sum()
    expected = -(q * torch.log_softmax(logits.reshape(-1), 0)).sum()
    torch.testing.assert_close(spatial_softmax_ce(logits, targets, mask), expected)
