"""Inference, in layers that each import only the ones below:

- ``settings``: ``InferenceSettings``, one checked object built once from the config;
- ``voxel_match``: the input's voxel size against the trained one (downsample, whether the SCM suits);
- ``predict``, ``backends``, ``stages``: arrays in, arrays out (stage 1, the SCM, masks);
- ``inferer``: ``StackInferer``, both stages as one MONAI ``Inferer``;
- ``block``: one Z block with its halo, and its done-markers;
- ``local``, ``distributed``: the block drivers (this process, or a Dask cluster);
- ``jobs``: files in, files out (``SegmentJob``, what ``inference.yaml`` runs; ``segment_blocks``).
"""

from emseg_monai.inference import voxel_match
from emseg_monai.inference.backends import BACKENDS, to_backend
from emseg_monai.inference.inferer import StackInferer
from emseg_monai.inference.jobs import SegmentJob, segment_blocks, wants_blocks
from emseg_monai.inference.predict import predict_stack
from emseg_monai.inference.settings import InferenceSettings
from emseg_monai.inference.stages import scm, segment, stage1, to_mask

__all__ = [
    "BACKENDS",
    "InferenceSettings",
    "SegmentJob",
    "StackInferer",
    "predict_stack",
    "scm",
    "segment",
    "segment_blocks",
    "stage1",
    "to_backend",
    "to_mask",
    "voxel_match",
    "wants_blocks",
]
