"""Tests for emseg_monai.transforms.piecewise_affine (tiny images, CPU; GPU test skipped without CUDA)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from skimage.transform import PiecewiseAffineTransform, warp

from emseg_monai.transforms.piecewise_affine import (
    RandPiecewiseAffine,
    RandPiecewiseAffined,
    control_grid,
    piecewise_affine_warp,
)

H, W, MARGIN = 64, 80, 4


def smooth_image(dtype=np.float64) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (0.5 + 0.25 * np.sin(xx / 5.0) + 0.25 * np.cos(yy / 7.0 + 1.0)).astype(dtype)[None]


def jittered(seed: int, scale: float = 0.05, grid=(4, 4)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    src = control_grid((H, W), grid)
    return src, src + rng.normal(size=src.shape) * scale * np.array([W, H])


def skimage_warp(image2d: np.ndarray, src: np.ndarray, dst: np.ndarray, order: int = 1) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tform = PiecewiseAffineTransform.from_estimate(dst, src)
        return warp(image2d, tform, order=order, preserve_range=True)


def interior(a: np.ndarray) -> np.ndarray:
    return a[..., MARGIN:-MARGIN, MARGIN:-MARGIN]


def test_control_grid_corners_and_order():
    pts = control_grid((H, W), (3, 5))
    assert pts.shape == (15, 2)
    np.testing.assert_allclose(pts[0], [0, 0])
    np.testing.assert_allclose(pts[4], [W - 1, 0])  # row-major, (col, row)
    np.testing.assert_allclose(pts[-1], [W - 1, H - 1])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("grid", [(4, 4), (3, 5)])
def test_matches_skimage(seed, grid):
    image = smooth_image()
    src, dst = jittered(seed, grid=grid)
    ours = piecewise_affine_warp(image, src, dst)
    ref = skimage_warp(image[0], src, dst)
    assert np.abs(interior(ours[0]) - interior(ref)).mean() < 1e-3
    assert np.abs(ours[0] - ref).max() < 1e-6  # in float64 it even agrees on the border


def test_matches_skimage_float32_and_multichannel():
    image = np.concatenate([smooth_image(np.float32), 1 - smooth_image(np.float32)])
    src, dst = jittered(11)
    ours = piecewise_affine_warp(image, src, dst)
    assert ours.dtype == np.float32 and ours.shape == image.shape
    for c in range(2):
        ref = skimage_warp(image[c].astype(np.float64), src, dst)
        assert np.abs(interior(ours[c]) - interior(ref)).mean() < 1e-3


def test_outside_mesh_is_zero():
    src = control_grid((H, W))
    dst = (src - [W / 2, H / 2]) * 0.5 + [W / 2, H / 2]  # mesh covers only the central part
    out = piecewise_affine_warp(np.ones((1, H, W), np.float32), src, dst)
    assert out[0, 0, 0] == 0 and out[0, H // 2, 2] == 0
    assert out[0, H // 2, W // 2] == pytest.approx(1.0)


def test_content_moves_from_src_to_dst():
    src = control_grid((H, W))
    k = 5  # an interior control point
    image = np.zeros((1, H, W), np.float32)
    col, row = src[k].astype(int)
    image[0, row, col] = 1.0
    dst = src.copy()
    dst[k] += [3.0, 2.0]
    out = piecewise_affine_warp(image, src, dst, mode="nearest")
    assert np.unravel_index(out[0].argmax(), (H, W)) == (row + 2, col + 3)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_identity(mode):
    image = smooth_image(np.float32)
    src = control_grid((H, W))
    np.testing.assert_allclose(piecewise_affine_warp(image, src, src.copy(), mode=mode), image, atol=1e-5)


def test_types_dtypes_and_meta():
    image = smooth_image(np.float32)
    src, dst = jittered(1)
    out_np = piecewise_affine_warp(image, src, dst)
    assert isinstance(out_np, np.ndarray) and out_np.dtype == np.float32

    out_t = piecewise_affine_warp(torch.from_numpy(image), torch.from_numpy(src), dst)
    assert type(out_t) is torch.Tensor and out_t.dtype == torch.float32
    np.testing.assert_allclose(out_t.numpy(), out_np, atol=1e-6)

    out_64 = piecewise_affine_warp(torch.from_numpy(image).double(), src, dst)
    assert out_64.dtype == torch.float64

    meta = MetaTensor(torch.from_numpy(image), meta={"filename_or_obj": "slice_007.tif"})
    out_m = piecewise_affine_warp(meta, src, dst)
    assert isinstance(out_m, MetaTensor) and out_m.meta["filename_or_obj"] == "slice_007.tif"
    np.testing.assert_allclose(out_m.numpy(), out_np, atol=1e-6)

    labels = (image > 0.5).astype(np.uint8) * 3
    out_u8 = piecewise_affine_warp(labels, src, dst, mode="nearest")
    assert out_u8.dtype == np.uint8 and set(np.unique(out_u8)) <= {0, 3}
    assert piecewise_affine_warp(labels, src, dst).dtype == np.uint8  # bilinear, rounded back


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    image = torch.from_numpy(smooth_image(np.float32))
    src, dst = jittered(2)
    out = piecewise_affine_warp(image.cuda(), src, dst)
    assert out.is_cuda
    np.testing.assert_allclose(out.cpu().numpy(), piecewise_affine_warp(image, src, dst).numpy(), atol=1e-4)


def test_random_transform_seed_and_skimage():
    image = smooth_image(np.float32)
    t = RandPiecewiseAffine(prob=1.0, scale_range=(0.02, 0.05)).set_random_state(7)
    first = t(image)
    assert 0.02 <= t.scale <= 0.05 and t.dst.shape == (16, 2)
    ref = skimage_warp(image[0].astype(np.float64), t.src, t.dst)
    assert np.abs(interior(first[0]) - interior(ref)).mean() < 1e-3
    second = RandPiecewiseAffine(prob=1.0, scale_range=(0.02, 0.05)).set_random_state(7)(image)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, t(image))  # the next draw differs
    assert np.array_equal(t(image, randomize=False), t(image, randomize=False))


def test_random_transform_metatensor_and_prob_zero():
    image = MetaTensor(torch.from_numpy(smooth_image(np.float32)), meta={"k": 1})
    out = RandPiecewiseAffine(prob=1.0).set_random_state(0)(image)
    assert isinstance(out, MetaTensor) and out.meta["k"] == 1
    assert RandPiecewiseAffine(prob=0.0)(image) is image
    arr = smooth_image()
    assert RandPiecewiseAffine(prob=0.0)(arr) is arr


def test_dictionary_same_warp_and_binary_label():
    label = (smooth_image() > 0.55).astype(np.float32)
    data = {"image": label.copy(), "label": label.copy(), "other": "kept"}
    t = RandPiecewiseAffined(["image", "label"], prob=1.0, scale_range=(0.04, 0.05), mode="nearest")
    out = t.set_random_state(3)(data)
    np.testing.assert_array_equal(out["image"], out["label"])
    assert out["other"] == "kept" and not np.array_equal(out["label"], label)

    t = RandPiecewiseAffined(["image", "label"], prob=1.0, scale_range=(0.04, 0.05), mode=("bilinear", "nearest"))
    out = t.set_random_state(3)(data)
    assert set(np.unique(out["label"])) <= {0.0, 1.0}
    assert np.mean((out["image"] > 0.5) == (out["label"] > 0.5)) > 0.97
    expected = piecewise_affine_warp(label, t.warp.src, t.warp.dst, mode="nearest")
    np.testing.assert_array_equal(out["label"], expected)


def test_dictionary_prob_zero_and_missing_keys():
    data = {"image": smooth_image()}
    out = RandPiecewiseAffined(["image"], prob=0.0)(data)
    assert out["image"] is data["image"]
    t = RandPiecewiseAffined(["image", "label"], prob=1.0, allow_missing_keys=True)
    assert t.set_random_state(0)(data)["image"].shape == (1, H, W)
    assert t({"nothing": 1}) == {"nothing": 1}


@pytest.mark.parametrize(
    "src, dst, match",
    [
        (np.zeros((16, 3)), None, "src must have shape"),
        (np.zeros(16), None, "src must have shape"),
        (None, np.zeros((2, 2)), "dst must have shape"),
        (None, np.full((16, 2), np.nan), "dst must hold finite"),
        (None, np.zeros((9, 2)) + np.arange(9)[:, None], "same shape|triangulated"),
        (None, np.stack([np.arange(16.0), np.arange(16.0)], 1), "triangulated"),
    ],
)
def test_bad_points(src, dst, match):
    good = control_grid((H, W))
    src = good if src is None else src
    dst = good if dst is None else dst
    with pytest.raises(ValueError, match=match):
        piecewise_affine_warp(smooth_image(), src, dst)


@pytest.mark.parametrize("shape", [(H, W), (1, 1, H, W), (1, 1, W)])
def test_bad_image(shape):
    src = control_grid((H, W))
    with pytest.raises(ValueError, match=r"image must be"):
        piecewise_affine_warp(np.zeros(shape), src, src)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        RandPiecewiseAffine(prob=1.0)(np.zeros(shape))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        RandPiecewiseAffined(["image"], prob=1.0)({"image": np.zeros(shape)})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"grid": (1, 4)}, r"grid .*\(1, 4\)"),
        ({"grid": (4,)}, "grid"),
        ({"grid": (4.5, 4)}, "grid"),
        ({"scale_range": (-0.1, 0.1)}, r"scale_range .*-0.1"),
        ({"scale_range": (0.2, 0.1)}, "scale_range"),
        ({"scale_range": (0.1, 0.5)}, "scale_range"),
        ({"scale_range": 0.1}, "scale_range"),
        ({"mode": "bicubic"}, "bicubic"),
    ],
)
def test_bad_transform_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandPiecewiseAffine(**kwargs)
    with pytest.raises(ValueError, match=match):
        RandPiecewiseAffined(["image"], **kwargs)


def test_bad_mode_per_key_and_in_function():
    with pytest.raises(ValueError, match="area"):
        RandPiecewiseAffined(["image", "label"], mode=("bilinear", "area"))
    with pytest.raises(ValueError, match="one per key"):
        RandPiecewiseAffined(["image", "label"], mode=("bilinear", "nearest", "nearest"))
    src = control_grid((H, W))
    with pytest.raises(ValueError, match="cubic"):
        piecewise_affine_warp(smooth_image(), src, src, mode="cubic")


def test_default_grid_is_the_papers_4_by_4_and_2_by_2_is_allowed():
    assert RandPiecewiseAffine().grid == (4, 4)
    assert RandPiecewiseAffined(keys="image").warp.grid == (4, 4)
    assert RandPiecewiseAffine(grid=(2, 2)).grid == (2, 2)
    assert RandPiecewiseAffined(keys="image", grid=(3, 2)).warp.grid == (3, 2)
