"""Pieces the widgets share: layer pickers, a progress row with a cancel button, one-line errors."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from emseg_monai.errors import ONE_LINE_ERRORS, InputError, find_cause


def show_error(message: str) -> None:
    """One line in napari's notification area."""
    from napari.utils.notifications import show_error as napari_error

    napari_error(message)


class LayerPicker(QComboBox):
    """Names of the viewer's layers of one kind (``"Image"`` or ``"Labels"``), kept up to date."""

    def __init__(self, viewer: Any, kind: str) -> None:
        super().__init__()
        self.viewer, self.kind = viewer, kind
        viewer.layers.events.inserted.connect(self.refresh)
        viewer.layers.events.removed.connect(self.refresh)
        self.refresh()

    def refresh(self, *_: Any) -> None:
        current = self.currentText()
        self.clear()
        names = [layer.name for layer in self.viewer.layers if self._fits(layer)]
        self.addItems(names)
        if current in names:
            self.setCurrentText(current)

    def _fits(self, layer: Any) -> bool:
        import napari.layers

        return isinstance(layer, getattr(napari.layers, self.kind))  # also through napari's plugin proxies

    def layer(self) -> Any:
        """The chosen layer; InputError when there is none of this kind."""
        name = self.currentText()
        if not name or name not in self.viewer.layers:
            raise InputError(f"no {self.kind.lower()} layer to use: add or open one first")
        layer = self.viewer.layers[name]
        if not self._fits(layer):
            article = "an" if self.kind[0] in "AEIOU" else "a"
            raise InputError(f"layer {name!r} is not {article} {self.kind.lower()} layer")
        return layer


def stack_of(layer: Any) -> Any:
    """The (Z, Y, X) data of a layer (lazy arrays stay lazy); InputError for other shapes or RGB."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    if getattr(layer, "rgb", False) or len(data.shape) != 3:
        raise InputError(f"layer {layer.name!r} must be a 3D (Z, Y, X) stack, got shape {tuple(data.shape)}")
    return data


class ProgressRow(QWidget):
    """A progress bar, a status line and a cancel button for one worker at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.bar, self.status, self.cancel = QProgressBar(), QLabel(""), QPushButton("Cancel")
        self.cancel.setEnabled(False)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.bar, self.cancel):
            layout.addWidget(widget)
        self.worker: Any = None
        self.on_cancel: Any = None  # a widget's own way to stop its worker (else the worker's quit)
        self.cancel.clicked.connect(self.stop)

    def start(self, worker: Any, total: int, text: str) -> None:
        self.worker = worker
        self.bar.setRange(0, max(1, total))
        self.bar.setValue(0)
        self.status.setText(text)
        self.cancel.setEnabled(True)
        worker.yielded.connect(self.step)
        worker.finished.connect(self.done)
        worker.start()

    def step(self, value: Any) -> None:
        done, text = value
        self.bar.setValue(done)
        self.status.setText(text)

    def stop(self) -> None:
        if self.worker is not None:
            self.status.setText("cancelling ...")
            if self.on_cancel is not None:
                self.on_cancel()
            else:
                self.worker.quit()

    def fail(self, exc: BaseException) -> str:
        """Show ``exc`` as one line in the status line; returns that line (for napari's notification)."""
        cause = find_cause(exc, ONE_LINE_ERRORS)
        message = str(cause) if cause is not None else f"{type(exc).__name__}: {exc}"
        self.status.setText(f"error: {message}")
        return message

    def done(self) -> None:
        self.cancel.setEnabled(False)
        self.worker = None

    @property
    def busy(self) -> bool:
        return self.worker is not None
