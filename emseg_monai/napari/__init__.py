"""napari plugin (``pip install "emseg-monai[napari]"``): segment, train from painted slices, measure.

The manifest is ``napari.yaml`` beside this file (npe2). Widgets run their work in a background
worker (the viewer stays responsive), show a progress bar and a cancel button, and report bad
input as one line in napari's notification area.
"""
