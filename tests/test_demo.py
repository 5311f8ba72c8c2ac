from emseg_monai.demo import run_demo
from tests.conftest import TINY_FEATURES


def test_tiny_demo_runs_end_to_end(tmp_path, monkeypatch):
    import emseg_monai.demo as demo

    monkeypatch.setattr(
        demo,
        "DEMO_SHARED",
        {**demo.DEMO_SHARED, "features": TINY_FEATURES, "scm_window": 3},
    )
    tiny = {"epochs": 1, "iterations_per_epoch": 2, "batch_size": 2, "crop_size": 32}
    report = run_demo(tmp_path, shape=(12, 32, 32), stage1=tiny, scm=tiny, device="cpu")
    for row in ("| stage 1 |", "| stage 1 + MPP |", "| stage 1 + SCM |", "Dice (%)", "IoU (%)"):
        assert row in report
    assert (tmp_path / "results.md").read_text().strip() == report.strip()
    assert (tmp_path / "per_slice_test_stage1_SCM.csv").is_file()
    for picture in ("overlay_test_scm.png", "overlay_test_stage1.png", "dice_along_z_test.png"):
        assert (tmp_path / picture).stat().st_size > 1000
