"""The docs cannot rot: the how-to guides' commands and code run on a tiny stack, and the reference
is regenerated from the code and compared."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emseg_monai.cli import main
from emseg_monai.data import make_synthetic_stack
from emseg_monai.io import write_stack
from tests.test_cli import TRAIN_ARGS

ROOT = Path(__file__).resolve().parent.parent
HOWTOS = sorted((ROOT / "docs" / "howto").glob("*.md"))
BLOCK = re.compile(r"```(bash|python)\n(.*?)```", re.S)
# tiny-run options appended to `emseg train` (argparse keeps the last value); the docs' --labeled stays
TINY_TRAIN = [a for i, a in enumerate(TRAIN_ARGS) if a != "--labeled" and TRAIN_ARGS[i - 1] != "--labeled"]


def blocks(path):
    """(language, code) of each fenced block, bash lines joined at trailing backslashes."""
    return [(lang, code.replace("\\\n", " ")) for lang, code in BLOCK.findall(path.read_text())]


def test_every_howto_has_runnable_blocks():
    assert {p.name for p in HOWTOS} >= {
        "train_your_own_stack.md",
        "segment_a_large_volume.md",
        "transforms_in_your_pipeline.md",
    }
    assert all(blocks(p) for p in HOWTOS)


@pytest.mark.parametrize("doc", HOWTOS, ids=lambda p: p.stem)
def test_howto_runs(doc, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    image, label = make_synthetic_stack((12, 32, 32), seed=3)
    write_stack("stack.tif", image)
    write_stack("labels.tif", (label > 0).astype(np.uint8) * 255)
    for lang, code in blocks(doc):
        if lang == "python":
            exec(compile(code, f"{doc.name} block", "exec"), {"__name__": "__docs__"})
            continue
        for line in code.splitlines():
            line = line.split(" #")[0].strip()
            if not line or line.startswith("#"):
                continue
            argv = shlex.split(line)
            assert argv[0] == "emseg", f"{doc.name}: only emseg commands are run: {line}"
            argv = argv[1:] + (TINY_TRAIN if argv[1] == "train" else [])
            assert main(["--quiet", *argv]) == 0, (doc.name, line, capsys.readouterr().err)


def test_reference_is_up_to_date():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "make_reference.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
