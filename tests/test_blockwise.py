"""Block-wise segmentation equals whole-volume segmentation, reads TIFF/NIfTI/Zarr lazily, resumes."""

import json

import numpy as np
import pytest
import torch
import zarr
from monai.networks.nets import BasicUNet

from emseg_monai.data import make_synthetic_stack
from emseg_monai.errors import InputError
from emseg_monai.inference import InferenceSettings, local, segment, segment_blocks
from emseg_monai.inference.block import block_ranges
from emseg_monai.io import read_stack, write_stack
from emseg_monai.io.volumes import open_volume
from tests.conftest import TINY_FEATURES

WINDOW = 5
SETTINGS = InferenceSettings(window=WINDOW, batch_size=3)


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return BasicUNet(2, 1, 1, features=TINY_FEATURES).eval(), BasicUNet(2, WINDOW, 1, features=TINY_FEATURES).eval()


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vol")
    image, _ = make_synthetic_stack((17, 40, 48), seed=2)
    write_stack(folder / "image.tif", image)
    return folder, image


@pytest.fixture(scope="module")
def reference(nets, volume):
    return segment(volume[1], *nets, SETTINGS, progress=False)["final_mask"]


def test_block_ranges():
    assert block_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    with pytest.raises(InputError, match="got 0"):
        block_ranges(10, 0)


@pytest.mark.parametrize("block", [1, 4, 6, 17, 40])
def test_zarr_output_equals_whole_volume(nets, volume, reference, tmp_path, block):
    stats = segment_blocks(volume[0] / "image.tif", tmp_path / "out.zarr", nets, SETTINGS, block, progress=False)
    out = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[:]
    if block == 1:  # batches of one slice take other float paths in torch: rare one-step differences
        assert (out != reference).mean() < 1e-3
    else:
        np.testing.assert_array_equal(out, reference)
    assert stats["voxels"] == reference.size and stats["blocks"] == -(-17 // block)
    assert not (tmp_path / "out.zarr.blocks").exists()  # progress markers go once complete


def test_tiff_output_and_stage1_only(nets, volume, tmp_path):
    segment_blocks(volume[0] / "image.tif", tmp_path / "out.tif", (nets[0], None), SETTINGS, 5, progress=False)
    expected = segment(volume[1], nets[0], None, SETTINGS, progress=False)["final_mask"]
    np.testing.assert_array_equal(read_stack(tmp_path / "out.tif"), expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]


def test_nifti_and_zarr_inputs(nets, volume, reference, tmp_path):
    write_stack(tmp_path / "image.nii.gz", volume[1])
    plain = zarr.create_array(str(tmp_path / "plain.zarr"), shape=volume[1].shape, chunks=(4, 40, 48), dtype="uint8")
    plain[:] = volume[1]
    group = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w")
    group.attrs["multiscales"] = [{"datasets": [{"path": "0"}, {"path": "1"}]}]
    group.create_array("0", shape=volume[1].shape, chunks=(4, 40, 48), dtype="uint8")[:] = volume[1]
    group.create_array("1", shape=(17, 20, 24), dtype="uint8")
    for name in ("image.nii.gz", "plain.zarr", "ome.zarr"):
        np.testing.assert_array_equal(open_volume(tmp_path / name)[3:5], volume[1][3:5])
        out = tmp_path / f"out_{name.split('.')[0]}.zarr"
        segment_blocks(tmp_path / name, out, nets, SETTINGS, block=6, progress=False)
        np.testing.assert_array_equal(zarr.open_array(str(out), mode="r")[:], reference)


def test_interrupted_run_resumes_and_skips_finished_blocks(nets, volume, reference, tmp_path, monkeypatch):
    real, calls = local.block_mask, []

    def failing(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(local, "block_mask", failing)
    out = tmp_path / "out.zarr"
    with pytest.raises(KeyboardInterrupt):
        segment_blocks(volume[0] / "image.tif", out, nets, SETTINGS, block=4, progress=False)
    markers = sorted(p.name for p in (tmp_path / "out.zarr.blocks").glob("*-*.json"))
    assert [m for m in markers if m.startswith("scm")] == ["scm-0-4.json", "scm-4-8.json"]
    assert len([m for m in markers if m.startswith("stage1")]) == 5  # pass 1 was complete
    monkeypatch.setattr(local, "block_mask", real)
    with pytest.raises(InputError, match="output exists"):
        segment_blocks(volume[0] / "image.tif", out, nets, SETTINGS, block=4, progress=False)
    with pytest.raises(InputError, match="other settings"):
        segment_blocks(volume[0] / "image.tif", out, nets, SETTINGS, block=5, resume=True, progress=False)
    with pytest.raises(InputError, match="other settings"):  # another threshold: other masks
        segment_blocks(volume[0] / "image.tif", out, nets, SETTINGS.replace(threshold=0.4), 4, resume=True)
    recorded = tmp_path / "out.zarr.blocks" / "settings.json"
    kept = recorded.read_text()
    older = json.loads(kept)
    del older["smoothing"]  # as emseg-monai < 0.8.6 recorded it: no smoothing then
    recorded.write_text(json.dumps(older))
    with pytest.raises(InputError, match="predates the smoothing: resume with smoothing 0"):
        segment_blocks(volume[0] / "image.tif", out, nets, SETTINGS, block=4, resume=True, progress=False)
    with pytest.raises(InputError, match="other settings"):  # another Z sigma: other masks
        segment_blocks(volume[0] / "image.tif", out, nets, SETTINGS.replace(smoothing_z=0), 4, resume=True)
    older = json.loads(kept)
    del older["smoothing_z"]  # as emseg-monai < 0.8.9 recorded it: one sigma in all axes, as SETTINGS has
    del older["stage1_flips"]  # and < 0.8.11: stage 1 once before the SCM, as SETTINGS has
    recorded.write_text(json.dumps(older))
    same_masks = SETTINGS.replace(smoothing_z=SETTINGS.smoothing)  # the sigma along Z given, equal: accepted
    stats = segment_blocks(volume[0] / "image.tif", out, nets, same_masks, block=4, resume=True, progress=False)
    assert stats["skipped"] == 2 and stats["blocks"] == 3
    np.testing.assert_array_equal(zarr.open_array(str(out), mode="r")[:], reference)


def test_bad_inputs(nets, volume, tmp_path):
    zarr.open_group(str(tmp_path / "empty.zarr"), mode="w")
    with pytest.raises(InputError, match="no array"):
        open_volume(tmp_path / "empty.zarr")
    with pytest.raises(InputError, match="does not exist"):
        open_volume(tmp_path / "missing.zarr")
    with pytest.raises(InputError, match="resume needs a Zarr"):
        segment_blocks(volume[0] / "image.tif", tmp_path / "o.tif", nets, SETTINGS, resume=True)
    with pytest.raises(InputError, match=r"\.zarr, \.tif"):
        segment_blocks(volume[0] / "image.tif", tmp_path / "o.png", nets, SETTINGS)


def test_cli_block_wise_equals_in_memory(volume, tmp_path, capsys):
    from emseg_monai.cli import main

    image = str(volume[0] / "image.tif")
    assert main(["--quiet", "segment", image, str(tmp_path / "whole.tif")]) == 0
    assert main(["--quiet", "segment", image, str(tmp_path / "blocks.zarr"), "--block-size", "5"]) == 0
    assert "Mvoxel/s" in capsys.readouterr().out
    np.testing.assert_array_equal(
        zarr.open_array(str(tmp_path / "blocks.zarr"), mode="r")[:], read_stack(tmp_path / "whole.tif")
    )
    assert main(["segment", image, str(tmp_path / "blocks.zarr")]) == 2  # exists
    assert main(["segment", image, str(tmp_path / "x.tif"), "--block-size", "0"]) == 2
    zarr.open_group(str(tmp_path / "group.zarr"), mode="w")
    assert main(["segment", str(tmp_path / "group.zarr"), str(tmp_path / "o.zarr")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "output exists" in err[0] and "got 0" in err[1] and "no array" in err[2]
    assert not (tmp_path / "o.zarr").exists() and not (tmp_path / "x.tif").exists()


def test_dask_local_cluster_equals_single_process(nets, volume, reference, tmp_path):
    pytest.importorskip("distributed")
    from emseg_monai.inference.distributed import connect

    client = connect(workers=2)
    try:
        stats = segment_blocks(
            volume[0] / "image.tif", tmp_path / "dask.zarr", nets, SETTINGS, block=4, client=client, progress=False
        )
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    assert stats["blocks"] == 5
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "dask.zarr"), mode="r")[:], reference)
    assert not (tmp_path / "dask.zarr.blocks").exists()


def test_dask_scheduler_that_does_not_answer():
    pytest.importorskip("distributed")
    import time

    from emseg_monai.inference.distributed import connect

    start = time.monotonic()
    with pytest.raises(InputError, match="tcp://127.0.0.1:9"):
        connect(scheduler="tcp://127.0.0.1:9", timeout=3)
    assert time.monotonic() - start < 30


def test_unreadable_chunking_and_damaged_chunks(tmp_path):
    import json

    bad = zarr.create_array(str(tmp_path / "grid.zarr"), shape=(4, 8, 8), chunks=(2, 8, 8), dtype="uint8")
    bad[:] = 1
    meta = json.loads((tmp_path / "grid.zarr" / "zarr.json").read_text())
    meta["chunk_grid"]["configuration"]["chunk_shape"] = [0, 8, 8]
    (tmp_path / "grid.zarr" / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match=r"unreadable chunking: chunk shape \(0, 8, 8\)"):
        open_volume(tmp_path / "grid.zarr")
    damaged = zarr.create_array(str(tmp_path / "data.zarr"), shape=(4, 8, 8), chunks=(2, 8, 8), dtype="uint8")
    damaged[:] = 1
    (tmp_path / "data.zarr" / "c" / "0" / "0" / "0").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"cannot read slices 0\.\.0 of"):
        open_volume(tmp_path / "data.zarr")


def test_killed_segment_resumes_to_the_same_masks(volume, tmp_path):
    """SIGKILL a block-wise `emseg segment` after its first finished block, then --resume."""
    import os
    import signal
    import subprocess
    import sys
    import time

    image, out = str(volume[0] / "image.tif"), tmp_path / "killed.zarr"
    args = [sys.executable, "-m", "emseg_monai.cli", "--quiet", "segment", image]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*args, str(out), "--block-size", "1"], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if list((tmp_path / "killed.zarr.blocks").glob("scm-*.json")):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed mid-run"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)  # reaps it and closes its stderr pipe
    done = list((tmp_path / "killed.zarr.blocks").glob("scm-*.json"))
    assert 0 < len(done) < 17
    resumed = subprocess.run([*args, str(out), "--block-size", "1", "--resume"], env=env, capture_output=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    whole = subprocess.run([*args, str(tmp_path / "whole.zarr"), "--block-size", "1"], env=env, capture_output=True)
    assert whole.returncode == 0
    np.testing.assert_array_equal(
        zarr.open_array(str(out), mode="r")[:], zarr.open_array(str(tmp_path / "whole.zarr"), mode="r")[:]
    )
    assert not (tmp_path / "killed.zarr.blocks").exists()


def test_block_wise_with_xy_tiles_equals_whole_volume_with_tiles(nets, volume, tmp_path):
    tiled = SETTINGS.replace(tile=32)  # 40 x 48 slices: 4 blended tiles each
    expected = segment(volume[1], *nets, tiled, progress=False)["final_mask"]
    segment_blocks(volume[0] / "image.tif", tmp_path / "t.zarr", nets, tiled, block=6, progress=False)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "t.zarr"), mode="r")[:], expected)


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_external_cluster_survives_a_killed_worker(nets, volume, tmp_path):
    """A scheduler and workers as separate processes (`dask scheduler`, `dask worker --nworkers 2`); one
    worker is SIGKILLed while the blocks run: Dask reruns its blocks and the masks stay the same."""
    pytest.importorskip("distributed")
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time

    from distributed import Client

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "dask"]
    options = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True}
    options["env"] = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = [
        subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **options)
    ]
    client = None
    try:
        deadline = time.monotonic() + 60
        while client is None and time.monotonic() < deadline:
            try:
                client = Client(address, timeout="2s")
            except OSError:
                time.sleep(0.5)
        assert client is not None, "the scheduler did not start"
        worker = [*dask, "worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard"]
        processes.append(subprocess.Popen(worker, **options))
        client.wait_for_workers(2, timeout=120)

        result, errors = {}, []
        out = tmp_path / "cluster.zarr"

        def job():
            try:
                result.update(
                    segment_blocks(volume[0] / "image.tif", out, nets, SETTINGS, 1, client=client, progress=False)
                )
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        thread = threading.Thread(target=job)
        thread.start()
        while thread.is_alive() and not list((tmp_path / "cluster.zarr.blocks").glob("stage1-*.json")):
            time.sleep(0.01)
        assert thread.is_alive(), "the run ended before a worker could be killed mid-run"
        os.kill(next(iter(client.run(os.getpid).values())), signal.SIGKILL)
        thread.join(timeout=300)
        assert not thread.is_alive() and not errors, errors
        assert result["blocks"] == 17
        single = tmp_path / "single.zarr"  # blocks of one slice: compare with the same blocks in one process
        segment_blocks(volume[0] / "image.tif", single, nets, SETTINGS, 1, progress=False)
        np.testing.assert_array_equal(zarr.open_array(str(out), mode="r")[:], zarr.open_array(str(single), mode="r")[:])
    finally:
        if client is not None:
            client.close()
        for proc in processes:  # a `dask worker` restarting a worker may ignore SIGTERM: kill its group
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)


def test_cluster_faults_become_one_line_errors(capsys, monkeypatch, tmp_path):
    pytest.importorskip("distributed")
    from distributed import KilledWorker
    from distributed.comm import CommClosedError

    from emseg_monai import workflows
    from emseg_monai.cli import main
    from emseg_monai.errors import EnvironmentFault
    from emseg_monai.inference.distributed import cluster_fault

    fault = cluster_fault(KilledWorker("emseg-task-3", "tcp://10.0.0.7:4000", 3), "the SCM")
    assert isinstance(fault, EnvironmentFault) and "kept dying while running the SCM" in str(fault)
    assert "lost the Dask scheduler" in str(cluster_fault(CommClosedError("gone"), "stage 1"))
    assert cluster_fault(ValueError("a bug"), "stage 1") is None  # not the environment: a traceback

    def fail(*args, **kwargs):
        raise RuntimeError("Failed to evaluate ConfigExpression") from fault

    monkeypatch.setattr(workflows, "run_config", fail)
    assert main(["segment", "in.zarr", str(tmp_path / "out.zarr"), "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Dask workers kept dying" in err[0]


def test_a_cluster_without_workers_ends_the_run_with_one_line():
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster
    from tqdm import tqdm

    from emseg_monai.errors import EnvironmentFault
    from emseg_monai.inference.distributed import _wait

    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        future = client.submit(sum, [1, 2], pure=False)
        with pytest.raises(EnvironmentFault, match="no worker for 1 s while running stage 1"):
            _wait(client, [future], tqdm(disable=True), "stage 1", no_workers=1)


@pytest.mark.parametrize(
    "changes",
    [{"flips": True}, {"stage1_flips": True}, {"input_kind": "mask"}, {"stage1_downsample": 2, "scm_downsample": 2}],
    ids=["flips", "stage1-flips", "mask-inputs", "half-resolution"],
)
def test_block_wise_equals_whole_volume_with_other_settings(nets, volume, tmp_path, changes):
    settings = SETTINGS.replace(**changes)
    expected = segment(volume[1], *nets, settings, progress=False)["final_mask"]
    segment_blocks(volume[0] / "image.tif", tmp_path / "o.zarr", nets, settings, block=6, progress=False)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "o.zarr"), mode="r")[:], expected)
    assert not np.array_equal(expected, segment(volume[1], *nets, SETTINGS, progress=False)["final_mask"])


def test_block_mask_of_an_inner_block_is_that_block_of_the_whole_volume(nets, volume, tmp_path):
    from emseg_monai.inference.block import block_mask, mark
    from emseg_monai.transforms.stacks import intensity_range

    image = volume[1][:, :, :16]  # X (16) under Z + halo: the halo is counted in slices, not in X
    whole = segment(image, *nets, SETTINGS, progress=False)
    value_range = intensity_range(image)
    for z0, z1 in ((4, 8), (8, 12), (13, 17)):
        mask = block_mask(image, whole["stage1_prob"], z0, z1, value_range, nets, SETTINGS)
        np.testing.assert_array_equal(mask, whole["final_mask"][z0:z1])
    marker = tmp_path / "scm-4-8.json"
    mark(marker)
    mark(marker)  # marking a finished block again (a resumed run) is fine
    assert marker.read_text() == "{}"
