import numpy as np
import pytest
import torch
from monai.networks.nets import BasicUNet

from emseg_monai.errors import InputError
from emseg_monai.inference import InferenceSettings, predict_stack, segment, to_mask
from emseg_monai.io import read_mask, read_stack, write_stack
from emseg_monai.training import run_mpp, run_stage1
from tests.conftest import TINY_FEATURES


class MeanOfWindow(torch.nn.Module):
    """Logit whose sigmoid is the mean of the input channels (to check windows and resizing)."""

    def forward(self, x):
        p = x.mean(dim=1, keepdim=True).clamp(1e-4, 1 - 1e-4)
        return torch.log(p / (1 - p))


def unet(in_channels=1):
    torch.manual_seed(0)
    return BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=1, features=TINY_FEATURES)


def test_predict_stack_uses_windows_with_repeated_ends():
    stack = np.zeros((5, 8, 8), np.float32)
    stack[0] = 1.0
    out = predict_stack(MeanOfWindow(), stack, window=3, progress=False)
    assert out.dtype == np.uint8 and out.shape == stack.shape
    # slice 0 sees (0, 0, 1): mean 2/3; slice 1 sees (0, 1, 2): 1/3; slice 2 sees nothing of slice 0
    assert out[0, 0, 0] == round(255 * 2 / 3) and out[1, 0, 0] == round(255 / 3) and out[2].max() <= 1


def test_predict_stack_downsample_keeps_shape_and_values():
    stack = np.full((3, 20, 30), 0.5, np.float32)
    out = predict_stack(MeanOfWindow(), stack, downsample=2, batch_size=2, progress=False)
    assert out.shape == (3, 20, 30)
    assert np.abs(out.astype(int) - 128).max() <= 1


def test_predict_stack_flips_match_for_symmetric_net():
    stack = np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)
    a = predict_stack(MeanOfWindow(), stack, flips=True, progress=False)
    b = predict_stack(MeanOfWindow(), stack, flips=False, progress=False)
    assert np.abs(a.astype(int) - b).max() <= 1


class RampAlongX(torch.nn.Module):
    """Logit rising from left to right whatever the input: its flip average differs from one pass."""

    def forward(self, x):
        ramp = torch.linspace(-4.0, 4.0, x.shape[-1], device=x.device)
        return x[:, :1] * 0 + ramp


def test_flips_apply_to_the_final_stage_only():
    image = np.random.default_rng(2).integers(0, 255, (5, 16, 16), dtype=np.uint8)
    plain = segment(image, RampAlongX(), None, InferenceSettings(), progress=False)
    alone = segment(image, RampAlongX(), None, InferenceSettings(flips=True), progress=False)
    # stage 1 alone is final: flips average the ramp with its mirror, symmetric left to right
    left, right = plain["stage1_prob"][0, 0, [0, -1]].astype(int)
    assert right - left > 100
    np.testing.assert_allclose(alone["stage1_prob"], alone["stage1_prob"][..., ::-1], atol=1)
    scm_flips = InferenceSettings(window=3, flips=True, smoothing=0)  # the SCM's own output, unsmoothed
    both = segment(image, RampAlongX(), RampAlongX(), scm_flips, progress=False)
    # with an SCM, stage 1 runs once (its single-pass output is what the SCM was trained on) ...
    np.testing.assert_array_equal(both["stage1_prob"], plain["stage1_prob"])
    # ... and the SCM, the final stage, averages its flips
    np.testing.assert_array_equal(both["final_prob"], alone["stage1_prob"])


def test_stage1_flips_average_stage_1_also_where_the_scm_reads_it():
    image = np.random.default_rng(2).integers(0, 255, (5, 16, 16), dtype=np.uint8)
    alone = segment(image, RampAlongX(), None, InferenceSettings(flips=True), progress=False)
    settings = InferenceSettings(window=3, stage1_flips=True, smoothing=0)
    fed = segment(image, RampAlongX(), RampAlongX(), settings, progress=False)
    np.testing.assert_array_equal(fed["stage1_prob"], alone["stage1_prob"])  # the SCM reads the flip average
    plain_scm = segment(image, RampAlongX(), RampAlongX(), settings.replace(stage1_flips=False), progress=False)
    assert not np.array_equal(fed["stage1_prob"], plain_scm["stage1_prob"])
    # the SCM itself still runs once (flips: false): its ramp is not mirrored
    left, right = fed["final_prob"][0, 0, [0, -1]].astype(int)
    assert right - left > 100
    with pytest.raises(InputError, match="stage1_flips must be true or false .*, got 'often'"):
        InferenceSettings(stage1_flips="often")


def test_smoothing_applies_to_the_scm_output_and_blocks_equal_the_whole_stack():
    from scipy.ndimage import gaussian_filter

    from emseg_monai.inference import scm
    from emseg_monai.inference.block import block_mask
    from emseg_monai.transforms.windows import smoothing_reach

    prob = np.random.default_rng(3).integers(0, 256, (14, 20, 24), dtype=np.uint8)
    smoothed = InferenceSettings(window=3, tile=0, smoothing=1.0)  # sigma 1 slice, 1 pixel
    assert smoothing_reach(1.0) == 4 and smoothing_reach(1.5) == 6 and smoothing_reach(0) == 0
    raw = scm(MeanOfWindow(), prob, smoothed.replace(smoothing=0), progress=False)
    whole = scm(MeanOfWindow(), prob, smoothed, progress=False)
    # at full resolution (downsample 1): the Gaussian of the SCM's probabilities, rounded to 1/255
    expected = gaussian_filter(raw.astype(np.float32), 1.0)  # raw is rounded first: 1/255 apart at most
    assert np.abs(whole.astype(np.float32) - expected).max() <= 1.01
    assert np.abs(whole.astype(int) - raw).max() > 10  # the smoothing changed something
    for z0, z1 in [(0, 3), (5, 9), (11, 14)]:  # a few slices: the kernel reads the SCM beyond them
        np.testing.assert_array_equal(scm(MeanOfWindow(), prob, smoothed, np.arange(z0, z1), False), whole[z0:z1])
        volume = np.zeros_like(prob)  # block_mask reads only the stage-1 probabilities with an SCM
        mask = block_mask(volume, prob, z0, z1, (0, 1), (MeanOfWindow(), MeanOfWindow()), smoothed)
        np.testing.assert_array_equal(mask, to_mask(whole[z0:z1], 0.5))
    halved = smoothed.replace(scm_downsample=2)  # at the network's resolution, then resized
    np.testing.assert_array_equal(
        scm(MeanOfWindow(), prob, halved, np.arange(5, 9), False),
        scm(MeanOfWindow(), prob, halved, progress=False)[5:9],
    )
    alone = segment(prob, MeanOfWindow(), None, smoothed, progress=False)  # stage 1 alone: never smoothed
    np.testing.assert_array_equal(alone["final_prob"], alone["stage1_prob"])
    with pytest.raises(ValueError, match=r"SCM centers must be consecutive slice indices, got \[1, 3\]"):
        scm(MeanOfWindow(), prob, smoothed, np.array([1, 3]), False)
    with pytest.raises(ValueError, match="smoothing must be between 0 and 8, got -1"):
        InferenceSettings(smoothing=-1)
    with pytest.raises(ValueError, match="smoothing must be a number, got 'wide'"):
        InferenceSettings(smoothing="wide")


def test_a_z_sigma_of_its_own_smooths_each_axis_as_asked_and_blocks_still_equal_the_whole_stack():
    from scipy.ndimage import gaussian_filter

    from emseg_monai.inference import scm
    from emseg_monai.inference.block import block_mask

    prob = np.random.default_rng(4).integers(0, 256, (14, 20, 24), dtype=np.uint8)
    flat = InferenceSettings(window=3, tile=0, smoothing=1.0, smoothing_z=0)  # Y and X only
    raw = scm(MeanOfWindow(), prob, flat.replace(smoothing=0), progress=False)
    only_yx = scm(MeanOfWindow(), prob, flat, progress=False)
    assert np.abs(only_yx.astype(np.float32) - gaussian_filter(raw.astype(np.float32), (0, 1, 1))).max() <= 1.01
    assert flat.scm_halo == 1 and flat.z_smoothing == 0  # no slice beyond the SCM's window is read
    # Z alone (XY sigma 0), and the usual single sigma when smoothing_z is None
    only_z = scm(MeanOfWindow(), prob, flat.replace(smoothing=0, smoothing_z=2.0), progress=False)
    assert np.abs(only_z.astype(np.float32) - gaussian_filter(raw.astype(np.float32), (2, 0, 0))).max() <= 1.01
    assert flat.replace(smoothing_z=None).z_smoothing == 1.0 and flat.replace(smoothing_z=2.0).scm_halo == 1 + 8
    wide_z = flat.replace(smoothing=0.5, smoothing_z=1.5)
    whole = scm(MeanOfWindow(), prob, wide_z, progress=False)
    for z0, z1 in [(0, 3), (6, 9), (12, 14)]:  # the Z sigma's reach is read beyond each block
        np.testing.assert_array_equal(scm(MeanOfWindow(), prob, wide_z, np.arange(z0, z1), False), whole[z0:z1])
        mask = block_mask(np.zeros_like(prob), prob, z0, z1, (0, 1), (MeanOfWindow(), MeanOfWindow()), wide_z)
        np.testing.assert_array_equal(mask, to_mask(whole[z0:z1], 0.5))
    assert InferenceSettings(smoothing_z="none").smoothing_z is None  # a bundle command line's spelling
    assert InferenceSettings(smoothing_z="0").smoothing_z == 0.0
    with pytest.raises(ValueError, match="smoothing_z must be between 0 and 8, got 9"):
        InferenceSettings(smoothing_z=9)
    with pytest.raises(ValueError, match="smoothing_z must be a number, got 'flat'"):
        InferenceSettings(smoothing_z="flat")


def test_library_default_smoothing_is_the_bundles():
    from emseg_monai.workflows import inference_config

    config = inference_config()  # the shipped bundle's inference.yaml
    assert InferenceSettings().smoothing == float(config["smoothing"]) > 0  # StackInferer users get it too
    assert InferenceSettings().smoothing_z is None and config["smoothing_z"] is None  # one sigma in all axes


def test_predict_stack_rejects_even_window_and_2d():
    with pytest.raises(ValueError, match="odd"):
        predict_stack(MeanOfWindow(), np.zeros((3, 8, 8), np.float32), window=2)
    with pytest.raises(ValueError, match="Z, Y, X"):
        predict_stack(MeanOfWindow(), np.zeros((8, 8), np.float32))


def test_segment_shapes_and_stage1_only():
    image = np.random.default_rng(1).integers(0, 255, (6, 40, 36), dtype=np.uint8)
    result = segment(image, unet(), unet(3), InferenceSettings(window=3), progress=False)
    assert {k: v.shape for k, v in result.items()} == {
        k: image.shape for k in ("stage1_prob", "final_prob", "final_mask")
    }
    assert set(np.unique(result["final_mask"])) <= {0, 255}
    alone = segment(image, unet(), None, progress=False)
    np.testing.assert_array_equal(alone["final_prob"], alone["stage1_prob"])


def test_to_mask_threshold():
    prob = np.array([[[0, 127, 128, 255]]], np.uint8)
    np.testing.assert_array_equal(to_mask(prob, 0.5), [[[0, 0, 255, 255]]])


def test_run_stage1_and_run_mpp_write_files(tiny_data, tmp_path):
    paths = run_stage1(unet(), tiny_data / "image.tif", tmp_path / "out", InferenceSettings())
    assert read_stack(paths["prob"]).shape == (12, 32, 32)
    target = run_mpp(paths["mask"], tiny_data / "label.tif", "every:3", tmp_path / "out" / "mpp.tif", min_size=4)
    np.testing.assert_array_equal(read_mask(target)[::3], read_mask(tiny_data / "label.tif")[::3])


def test_run_stage1_missing_image_writes_nothing(tmp_path):
    from emseg_monai.errors import InputError

    with pytest.raises(InputError, match="does not exist"):
        run_stage1(unet(), tmp_path / "nope.tif", tmp_path / "out", InferenceSettings())
    assert not (tmp_path / "out").exists()


def test_write_then_segment_nifti_roundtrip(tmp_path):
    image = np.random.default_rng(2).integers(0, 255, (4, 16, 16), dtype=np.uint8)
    write_stack(tmp_path / "img.nii.gz", image)
    np.testing.assert_array_equal(read_stack(tmp_path / "img.nii.gz"), image)


def test_predict_stack_pads_slices_smaller_than_the_network_needs():
    out = predict_stack(unet(), np.random.default_rng(3).random((2, 10, 12)).astype(np.float32), progress=False)
    assert out.shape == (2, 10, 12)


def test_large_slices_run_in_blended_tiles_close_to_whole_slices():
    from monai.networks.nets import BasicUNet

    from tests.conftest import TINY_FEATURES

    torch.manual_seed(0)
    net = BasicUNet(2, 1, 1, features=TINY_FEATURES).eval()
    stack = np.random.default_rng(0).random((2, 96, 80)).astype(np.float32)
    whole = predict_stack(net, stack, tile=0, progress=False).astype(float)
    tiled = predict_stack(net, stack, tile=48, progress=False).astype(float)
    assert tiled.shape == whole.shape
    assert np.abs(tiled - whole).mean() < 8  # of 255: tile borders see less context, blending hides most
    assert not np.array_equal(tiled, whole)  # the tiled path did run


def test_use_scm_false_gives_the_stage1_masks():
    image = np.random.default_rng(4).integers(0, 255, (6, 40, 36), dtype=np.uint8)
    with_scm = segment(image, unet(), unet(3), InferenceSettings(window=3), progress=False)
    without = segment(image, unet(), unet(3), InferenceSettings(window=3, use_scm=False), progress=False)
    np.testing.assert_array_equal(without["final_mask"], to_mask(with_scm["stage1_prob"]))
    assert not np.array_equal(with_scm["final_prob"], with_scm["stage1_prob"])  # the SCM did change them


@pytest.mark.parametrize("shape", [(1, 6, 16, 16), (1, 2, 6, 16, 16), (1, 1, 1, 6, 16, 16)])
def test_stack_inferer_refuses_anything_but_one_channel_5d(shape):
    from emseg_monai.errors import InputError
    from emseg_monai.inference.inferer import StackInferer

    with pytest.raises(InputError, match=r"expects \(B, 1, Z, Y, X\) stacks, got shape"):
        StackInferer(InferenceSettings(window=3, backend="torch"), unet(3), progress=False)(torch.zeros(shape), unet())
    with pytest.raises(InputError, match="needs InferenceSettings, got dict"):
        StackInferer({"window": 3})


def test_stack_inferer_equals_segment_and_follows_use_scm():
    from emseg_monai.inference.inferer import StackInferer

    image = np.random.default_rng(1).integers(0, 255, (6, 40, 36), dtype=np.uint8)
    batch = torch.from_numpy(image.astype(np.float32))[None, None]
    both = StackInferer(InferenceSettings(window=3, backend="torch"), unet(3), progress=False)(batch, unet())
    alone = StackInferer(InferenceSettings(window=3, backend="torch", use_scm=False), unet(3), progress=False)
    stage1_only = alone(batch, unet())
    assert both.shape == stage1_only.shape == (1, 1, *image.shape)
    assert not torch.equal(both, stage1_only)  # the SCM ran, and changed the output
    again = StackInferer(InferenceSettings(window=3, backend="torch"), unet(3), progress=False)
    assert torch.equal(again(batch, unet()), both)  # deterministic, whatever the cache holds
