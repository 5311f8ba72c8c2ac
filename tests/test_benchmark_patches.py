"""The experiment patches in benchmarks/patches still apply to the tree (docs/results.md cites them)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATCHES = sorted((ROOT / "benchmarks" / "patches").glob("*.diff"))


def _in_git_tree() -> bool:
    if shutil.which("git") is None:
        return False
    done = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=ROOT, capture_output=True, text=True)
    return done.returncode == 0 and done.stdout.strip() == "true"


@pytest.mark.skipif(not _in_git_tree(), reason="needs git and a git checkout of the project")
@pytest.mark.parametrize("patch", PATCHES, ids=[p.name for p in PATCHES])
def test_patch_applies(patch):
    done = subprocess.run(["git", "apply", "--check", str(patch)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, f"{patch.name} no longer applies; refresh it: {done.stderr.strip()}"


def test_patches_found():
    assert PATCHES, "benchmarks/patches holds no .diff: docs/results.md cites stage1_window.diff"
