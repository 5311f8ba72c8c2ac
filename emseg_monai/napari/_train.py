"""Train widget: both stages from the slices painted in a labels layer, as ``emseg train`` in a subprocess.

The subprocess is the command-line tool itself, so the run is an ordinary bundle folder (usable in
the Segment widget, the CLI and MONAI), cancelling is its graceful SIGTERM (the state of the last
epoch is kept) and "resume" continues it.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import QCheckBox, QFormLayout, QLineEdit, QPushButton, QSpinBox, QVBoxLayout, QWidget

from emseg_monai.errors import InputError
from emseg_monai.napari._common import LayerPicker, ProgressRow, show_error, stack_of

EPOCH_LINE = re.compile(r"\b(stage1|scm) epoch (\d+)/(\d+)")


def painted_slices(labels: Any) -> list[int]:
    """Indices of the slices of a (Z, Y, X) labels stack with any painted (non-zero) pixel."""
    return [z for z in range(labels.shape[0]) if np.asarray(labels[z]).any()]


def inputs_folder(output: Path) -> Path:
    """Where the widget writes the image and labels it trains on: beside the run, kept for resuming."""
    return output.with_name(output.name + "_inputs")


def train_command(image: Path, label: Path, output: Path, labeled: list[int], options: dict[str, Any]) -> list[str]:
    """The ``emseg train`` command line (python -m emseg_monai.cli) the widget runs."""
    argv = [sys.executable, "-m", "emseg_monai.cli", "train", str(image), str(label)]
    argv += ["--labeled", ",".join(map(str, labeled)), "--output", str(output), "--val-slices", "none"]
    for key, value in options.items():
        if value is True:
            argv.append(f"--{key}")
        elif value not in (None, False, ""):
            argv += [f"--{key}", str(value)]
    return argv


STOPPED = 128 + signal.SIGTERM  # emseg train's exit status after SIGTERM (state kept)


def train_steps(argv: list[str], total: int, started: Callable[[subprocess.Popen], None] | None = None) -> Iterator:
    """Generator: runs ``argv``, yields (epochs done, last log line) twice a second; returns the exit status.

    ``started`` receives the process: the widget's Cancel sends it SIGTERM, ``emseg train`` stops
    after the current iteration and keeps its state for ``--resume``, and this generator ends when
    the process has ended (status ``STOPPED``). Any other failure raises InputError with the
    command's last error line. Closed early, it stops the process the same way.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    if started is not None:
        started(proc)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.put(line.rstrip())
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    done, last, tail = 0, "starting ...", []
    try:
        while True:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                yield done, last
                continue
            if line is None:
                break
            tail = (tail + [line])[-5:]
            match = EPOCH_LINE.search(line)
            if match:
                stage, epoch, epochs = match.group(1), int(match.group(2)), int(match.group(3))
                done = epoch + (total - epochs if stage == "scm" else 0)
                last = f"{'stage 1' if stage == 'stage1' else 'SCM'}: epoch {epoch} of {epochs}"
            elif "MPP" in line:
                last = "MPP: building the SCM's targets"
            yield done, last
        code = proc.wait()
        if code not in (0, STOPPED):
            error = next((t for t in reversed(tail) if "error" in t.lower()), f"emseg train ended with status {code}")
            raise InputError(error.split("error: ", 1)[-1])
        return code
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen, seconds: float = 60.0) -> None:
    """SIGTERM a still running process, wait up to ``seconds`` for its state to be saved, then kill it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


class TrainWidget(QWidget):
    """Image layer + labels layer with a few painted slices -> a trained bundle folder and the finished stack."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.image = LayerPicker(napari_viewer, "Image")
        self.labels = LayerPicker(napari_viewer, "Labels")
        self.slices = QLineEdit()
        self.slices.setPlaceholderText("the painted ones")
        self.output = QLineEdit(str(Path.home() / "emseg_run"))
        self.epochs, self.iterations = QSpinBox(), QSpinBox()
        for box, value in ((self.epochs, 30), (self.iterations, 40)):
            box.setRange(1, 10000)
            box.setValue(value)
        self.resume = QCheckBox("resume / fine-tune the run in this folder")
        self.overwrite = QCheckBox("replace the run in this folder")
        self.train_button = QPushButton("Train")
        self.train_button.clicked.connect(self.run)
        self.progress = ProgressRow()
        form = QFormLayout()
        form.addRow("image", self.image)
        form.addRow("painted labels", self.labels)
        form.addRow("labeled slices", self.slices)
        form.addRow("run folder", self.output)
        form.addRow("epochs (each stage)", self.epochs)
        form.addRow("iterations per epoch", self.iterations)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        for widget in (self.resume, self.overwrite, self.train_button, self.progress, self.progress.status):
            layout.addWidget(widget)
        layout.addStretch()
        self.extra: dict[str, Any] = {}  # more emseg train options (tests: tiny networks)
        self.result: Any = None
        self.process: subprocess.Popen | None = None  # the running emseg train
        self.progress.on_cancel = self.cancel

    def run(self) -> Any:
        """Write the inputs and start the worker (returned); None when the input is refused (message shown)."""
        from napari.qt.threading import thread_worker

        from emseg_monai.data.slices import parse_slice_spec
        from emseg_monai.io import write_stack

        if self.progress.busy:
            show_error("a training is already running: wait for it or cancel it")
            return None
        try:
            image_layer, label_layer = self.image.layer(), self.labels.layer()
            image, labels = stack_of(image_layer), stack_of(label_layer)
            if tuple(image.shape) != tuple(labels.shape):
                raise InputError(f"labels {tuple(labels.shape)} and image {tuple(image.shape)} differ in shape")
            spec = self.slices.text().strip()
            labeled = list(parse_slice_spec(spec, image.shape[0])) if spec else painted_slices(labels)
            if not labeled:
                raise InputError("no painted slice: paint the mitochondria of a few slices in the labels layer")
            output = Path(self.output.text().strip()).expanduser()
            if not output.parent.is_dir():
                raise InputError(f"folder for the run does not exist: {output.parent}")
            folder = inputs_folder(output)
            folder.mkdir(exist_ok=True)
            write_stack(folder / "image.tif", np.asarray(image))
            write_stack(folder / "label.tif", (np.asarray(labels) > 0).astype(np.uint8) * np.uint8(255))
        except Exception as exc:
            self._fail(exc)
            return None
        options: dict[str, Any] = {"epochs": self.epochs.value(), "iterations": self.iterations.value()}
        if self.resume.isChecked():  # a run's own epochs (fine-tuning: a third of them)
            options = {"resume": True}
        elif self.overwrite.isChecked():
            options["overwrite"] = True
        options.update(self.extra)
        scale = tuple(float(v) for v in image_layer.scale[-3:])
        if scale != (1.0, 1.0, 1.0):  # napari's default scale means unknown
            options.setdefault("voxel-size", ",".join(f"{v:g}" for v in scale))
        argv = train_command(folder / "image.tif", folder / "label.tif", output, labeled, options)
        total = 2 * int(options.get("epochs", self.epochs.value()))
        worker = thread_worker(train_steps)(argv, total, lambda proc: setattr(self, "process", proc))
        worker.returned.connect(lambda code: self._ended(image_layer, output, code))
        worker.errored.connect(self._fail)
        self.progress.start(worker, total, f"training on {len(labeled)} labeled slices ...")
        return worker

    def cancel(self) -> None:
        """SIGTERM the running ``emseg train``: it stops after this iteration with its state saved."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def _ended(self, layer: Any, output: Path, code: int) -> None:
        if code == STOPPED:
            self.progress.status.setText(f"stopped: the state is in {output}; tick resume and Train to go on")
            return
        from emseg_monai.io import read_mask

        finished = output / "finished_mask.tif"
        if finished.is_file():
            mask = (read_mask(finished) > 0).astype(np.uint8)
            self.result = self.viewer.add_labels(
                mask, name=f"{layer.name} finished", scale=layer.scale, translate=layer.translate
            )
        self.progress.status.setText(f"trained: {output} (use it as the Segment widget's weights bundle)")

    def _fail(self, exc: BaseException) -> None:
        show_error(self.progress.fail(exc))
