"""Measure widget: the per-mitochondrion table of ``emseg measure`` for a labels layer, shown and saved as CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from emseg_monai.napari._common import LayerPicker, show_error, stack_of


class MeasureWidget(QWidget):
    """One row per 3D connected component of a labels layer; the layer's scale is the voxel size (nm)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.labels = LayerPicker(napari_viewer, "Labels")
        self.measure_button, self.save_button = QPushButton("Measure"), QPushButton("Save CSV ...")
        self.measure_button.clicked.connect(self.measure)
        self.save_button.clicked.connect(lambda: self.save(None))
        self.save_button.setEnabled(False)
        self.table, self.summary = QTableWidget(), QLabel("")
        form = QFormLayout()
        form.addRow("mask", self.labels)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        for widget in (self.measure_button, self.summary, self.table, self.save_button):
            layout.addWidget(widget)
        self.rows: list[dict] = []

    def measure(self) -> list[dict]:
        from emseg_monai.evaluation.measure import COLUMNS, measure_objects

        try:
            layer = self.labels.layer()
            mask = np.asarray(stack_of(layer)) > 0
            scale = tuple(float(s) for s in layer.scale[-3:])
            voxel_size = scale if scale != (1.0, 1.0, 1.0) else None  # napari's default scale: unknown
            self.rows = measure_objects(mask, voxel_size)
        except Exception as exc:
            show_error(str(exc))
            return []
        self.table.setColumnCount(len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setRowCount(len(self.rows))
        for i, row in enumerate(self.rows):
            for j, key in enumerate(COLUMNS):
                value = row.get(key, "")
                self.table.setItem(
                    i,
                    j,
                    QTableWidgetItem(
                        "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
                    ),
                )
        unit = "" if voxel_size else " (set the layer's scale in nm for volumes)"
        self.summary.setText(f"{len(self.rows)} mitochondria in {layer.name}{unit}")
        self.save_button.setEnabled(bool(self.rows))
        return self.rows

    def save(self, path: str | Path | None) -> Path | None:
        from emseg_monai.evaluation.measure import write_measurements

        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "save the table", "mitochondria.csv", "CSV (*.csv)")
            if not path:
                return None
        try:
            written = write_measurements(path, self.rows, overwrite=True)
        except Exception as exc:
            show_error(str(exc))
            return None
        self.summary.setText(f"saved {written}")
        return written
