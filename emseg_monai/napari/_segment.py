"""Segment widget: stage 1 + SCM of a bundle on an image layer, in a background worker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from emseg_monai.napari._common import LayerPicker, ProgressRow, show_error, stack_of

CHUNK = 8  # slices per step: the unit of progress and of cancelling
SCM_CHUNK = 32  # SCM slices per step: its smoothing reads a few slices beyond each chunk (fewer, larger chunks)


def step_count(n_slices: int, with_scm: bool) -> int:
    """Steps ``segment_steps`` yields for a stack of ``n_slices``: stage-1 chunks, then SCM chunks."""
    return -(-n_slices // CHUNK) + (-(-n_slices // SCM_CHUNK) if with_scm else 0)


def segment_steps(data: Any, networks: tuple[Any, Any], settings: Any) -> Iterator[tuple[int, str]]:
    """Generator: yields (steps done, text) per chunk of slices; returns (mask 0/1, stage-1 probabilities).

    ``data`` is (Z, Y, X), numpy or lazy (Zarr, Dask): only ``CHUNK`` slices at a time are read. The
    masks equal ``inference.stages.segment``'s: stage 1 is per slice, and the SCM's windows read the
    whole stage-1 stack (kept in memory as uint8).
    """
    from emseg_monai.inference.stages import scm, stage1
    from emseg_monai.transforms.stacks import intensity_range, to_mask

    stage1_net, scm_net = networks
    z = data.shape[0]
    starts = list(range(0, z, CHUNK))
    value_range = intensity_range(data)
    probs = np.empty(tuple(data.shape), np.uint8)
    for i, z0 in enumerate(starts):
        z1 = min(z0 + CHUNK, z)
        probs[z0:z1] = stage1(
            stage1_net, np.asarray(data[z0:z1]), settings, value_range, progress=False, scm_follows=scm_net is not None
        )
        yield i + 1, f"stage 1: {z1} of {z} slices"
    final = probs
    if scm_net is not None:
        final = np.empty_like(probs)
        for i, z0 in enumerate(range(0, z, SCM_CHUNK)):
            z1 = min(z0 + SCM_CHUNK, z)
            final[z0:z1] = scm(scm_net, probs, settings, centers=np.arange(z0, z1), progress=False)
            yield len(starts) + i + 1, f"SCM: {z1} of {z} slices"
    return (to_mask(final, settings.threshold) > 0).astype(np.uint8), probs


class SegmentWidget(QWidget):
    """Pick an image layer and a weights bundle; adds a labels layer of mitochondria (1) when done."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.image = LayerPicker(napari_viewer, "Image")
        self.models = QLineEdit()
        self.models.setPlaceholderText("shipped weights (EPFL FIB-SEM)")
        browse = QPushButton("...")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.models)
        row.addWidget(browse)
        self.keep_stage1 = QCheckBox("also add the stage-1 probabilities")
        self.use_scm = QCheckBox("run the SCM (second stage)")
        self.use_scm.setToolTip(
            "ticked: where the weights' run chose it (use_scm) and the layer's sections suit it; unticked: stage 1 only"
        )
        self.use_scm.setChecked(True)
        self.run_button = QPushButton("Segment")
        self.run_button.clicked.connect(self.run)
        self.progress = ProgressRow()
        form = QFormLayout()
        form.addRow("image", self.image)
        form.addRow("weights bundle", row)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        for widget in (self.use_scm, self.keep_stage1, self.run_button, self.progress, self.progress.status):
            layout.addWidget(widget)
        layout.addStretch()
        self.result: Any = None

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "weights bundle (a training run or bundle/)")
        if folder:
            self.models.setText(folder)

    def run(self) -> Any:
        """Start the worker (returned, for tests); None when the input is refused (the message is shown)."""
        from napari.qt.threading import thread_worker

        if self.progress.busy:
            show_error("a segmentation is already running: wait for it or cancel it")
            return None
        try:
            layer = self.image.layer()
            data = stack_of(layer)
            networks, settings, note = self._networks(layer)
        except Exception as exc:
            return self._fail(exc)
        worker = thread_worker(segment_steps)(data, networks, settings)
        worker.returned.connect(lambda result: self._add(layer, result, note))
        worker.errored.connect(self._fail)
        worker.aborted.connect(lambda: self.progress.status.setText("cancelled: nothing added"))
        steps = step_count(data.shape[0], networks[1] is not None)
        self.progress.start(worker, steps, f"segmenting {layer.name} ...{note}")
        return worker

    def _networks(self, layer: Any) -> tuple[tuple[Any, Any], Any, str]:
        """The bundle's networks, settings and a note for the status line.

        "run the SCM" ticked follows the bundle's own ``use_scm`` (a training run whose MPP check kept
        stage 1 says false), as ``emseg segment`` does. A layer scale in nm other than napari's default
        of 1 is the voxel size, matched to the trained one (``inference.voxel_match``). At the default
        scale the voxel size is unknown: where the layer's image reads as sections clearly thicker than
        the training stack's (``workflows.thick_for_scm``), stage 1 runs alone. Weights trained on
        thick sections smooth the SCM's output in Y and X only where the layer's sections do not line
        up (``voxel_match.shifted_sections``, as for a file). The note says why stage 1 ran alone
        where the SCM was ticked, and when the smoothing along Z was left out.
        """
        from emseg_monai.inference.voxel_match import shifted_sections, trained_on_thick_sections
        from emseg_monai.networks import default_device
        from emseg_monai.options import as_bool
        from emseg_monai.workflows import inference_config, load_bundle_networks, thick_for_scm

        device = default_device()
        folder = self.models.text().strip() or None
        scale = tuple(float(v) for v in layer.scale[-3:])
        voxels = {}
        if len(scale) == 3 and scale != (1.0, 1.0, 1.0):
            voxels = {"match_voxel_size": True, "voxel_size": ",".join(f"{v:g}" for v in scale)}
        config, overrides, note = inference_config(folder), dict(voxels), ""
        if not self.use_scm.isChecked():
            overrides["use_scm"] = False
        elif not as_bool(config["use_scm"], "use_scm"):
            note = " (stage 1 alone, as the weights' bundle says: use_scm false, its training run's choice)"
        elif not voxels:
            reason = thick_for_scm(stack_of(layer), config)
            if reason is not None:
                overrides["use_scm"] = False
                note = f" (stage 1 alone: {reason}; set the layer's scale in nm to decide by voxel size)"
        stage1, scm, settings, _ = load_bundle_networks(folder, device=device, **overrides)
        if scm is None and self.use_scm.isChecked() and not note:  # voxel_match's warning has the figures
            note = " (stage 1 alone: the layer's sections are at least twice as thick as the training stack's)"
        thick = trained_on_thick_sections(config.get("trained_voxel_size"), config.get("trained_z_ratio"))  # old: None
        measure = thick and as_bool(config.get("match_voxel_size", True), "match_voxel_size") and settings.smoothing > 0
        if scm is not None and settings.smoothing_z is None and measure:  # as emseg segment does for a file
            shifted = shifted_sections(stack_of(layer), settings.scm_downsample, warn=False)  # the note says it
            if shifted is not None:
                settings = settings.replace(smoothing_z=0.0)
                note += f" (smoothing in Y and X only: sections shifted by {shifted[0]:.1f} px or more)"
        return (stage1, scm), settings, note

    def _add(self, layer: Any, result: tuple[np.ndarray, np.ndarray], note: str = "") -> None:
        mask, probs = result
        place = {"scale": layer.scale, "translate": layer.translate}
        self.result = self.viewer.add_labels(mask, name=f"{layer.name} mitochondria", opacity=0.5, **place)
        if self.keep_stage1.isChecked():
            self.viewer.add_image(probs, name=f"{layer.name} stage-1 probability", colormap="magma", **place)
        self.progress.status.setText(f"done: {layer.name} mitochondria ({100 * mask.mean():.1f}% of voxels){note}")

    def _fail(self, exc: BaseException) -> None:
        show_error(self.progress.fail(exc))
