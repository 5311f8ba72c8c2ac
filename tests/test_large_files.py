"""bundle/large_files.yml describes the shipped weights: each path exists and its hash matches."""

import hashlib
from pathlib import Path

import yaml

from emseg_monai import default_bundle_root

BUNDLE = Path(default_bundle_root())


def test_large_files_match_the_weights():
    entries = yaml.safe_load((BUNDLE / "large_files.yml").read_text())["large_files"]
    assert {e["path"] for e in entries} >= {"models/model.pt", "models/scm.pt"}
    for entry in entries:
        data = (BUNDLE / entry["path"]).read_bytes()
        assert entry["hash_type"] == "md5"
        assert hashlib.md5(data).hexdigest() == entry["hash_val"], entry["path"]
        assert len(data) < 20 * 2**20  # the project keeps each weights file under 20 MB
