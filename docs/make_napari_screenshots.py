"""Screenshots of the napari plugin's widgets for the docs (docs/figures/napari_*.png).

    python docs/make_napari_screenshots.py          # needs the [napari] extra; starts Xvfb when no display

Opens the plugin's sample data and docks each widget in turn: Train from 4 painted slices (a short
recipe, about 3 minutes on 2 cores), Segment with that run, Measure its result; saves the window.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

FIGURES = Path(__file__).resolve().parent / "figures"


def wait(viewer, condition, seconds: float = 300.0) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while not condition():
        QApplication.processEvents()
        if time.monotonic() > end:
            raise TimeoutError("the widget did not finish")
        time.sleep(0.05)


def main() -> None:
    display = None
    if not os.environ.get("DISPLAY") and shutil.which("Xvfb"):
        from pyvirtualdisplay import Display

        display = Display(visible=False, size=(1600, 1000)).start()
    import napari

    run = Path(tempfile.mkdtemp(prefix="emseg-napari-")) / "run"
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 900)
    viewer.open_sample("emseg-monai", "synthetic-em")
    viewer.dims.set_point(0, 12)
    FIGURES.mkdir(exist_ok=True)
    # 1. train from 4 painted slices of the sample (a short recipe: about 3 minutes on 2 cores)
    dock, train = viewer.window.add_plugin_dock_widget("emseg-monai", "Train from painted slices")
    train.labels.setCurrentText("synthetic mitochondria")
    train.slices.setText("0:24:6")
    train.output.setText(str(run))
    train.epochs.setValue(10)
    train.iterations.setValue(20)
    train.extra = {"downsample": 1, "crop-size": 128, "seed": 0}
    train.run()
    wait(viewer, lambda: not train.progress.busy, 1800)
    if train.result is None:
        raise RuntimeError(train.progress.status.text())
    viewer.layers["synthetic mitochondria"].visible = False
    viewer.screenshot(str(FIGURES / "napari_train.png"), canvas_only=False, flash=False)
    viewer.window.remove_dock_widget(dock)
    viewer.layers["synthetic EM finished"].visible = False
    # 2. segment the stack with the new run
    dock, segment = viewer.window.add_plugin_dock_widget("emseg-monai", "Segment")
    segment.models.setText(str(run))
    segment.run()
    wait(viewer, lambda: not segment.progress.busy)
    if segment.result is None:
        raise RuntimeError(segment.progress.status.text())
    viewer.screenshot(str(FIGURES / "napari_segment.png"), canvas_only=False, flash=False)
    viewer.window.remove_dock_widget(dock)
    # 3. measure its mitochondria
    dock, measure = viewer.window.add_plugin_dock_widget("emseg-monai", "Measure")
    measure.labels.setCurrentText("synthetic EM mitochondria")
    measure.measure()
    viewer.screenshot(str(FIGURES / "napari_measure.png"), canvas_only=False, flash=False)
    print("wrote", *sorted(p.name for p in FIGURES.glob("napari_*.png")), flush=True)
    viewer.close()
    shutil.rmtree(run.parent, ignore_errors=True)
    if display is not None:
        display.stop()


if __name__ == "__main__":
    main()
