"""The docs cannot rot: every command of the README, getting started, the how-to guides and the
bundle's README runs on tiny synthetic stacks (bundle commands as `python -m monai.bundle` parses
them), and the reference is regenerated from the code and compared."""

import logging
import re
import shlex
import subprocess
import sys
from pathlib import Path

import fire
import monai.bundle
import numpy as np
import pytest

from emseg_monai.cli import main
from emseg_monai.data import make_synthetic_stack
from emseg_monai.io import write_stack
from tests.conftest import TINY_FEATURES, TRAIN_ARGS

ROOT = Path(__file__).resolve().parent.parent
HOWTOS = sorted((ROOT / "docs" / "howto").glob("*.md"))
DOCS = [ROOT / "README.md", ROOT / "docs" / "getting_started.md", *HOWTOS, ROOT / "bundle" / "docs" / "README.md"]
BLOCK = re.compile(r"```(bash|python)\n(.*?)```", re.S)
# tiny-run options appended to `emseg train` (argparse keeps the last value); the docs' --labeled stays
TINY_TRAIN = [a for i, a in enumerate(TRAIN_ARGS) if a != "--labeled" and TRAIN_ARGS[i - 1] != "--labeled"]
FEATURES = "[" + ",".join(map(str, TINY_FEATURES)) + "]"
# tiny settings appended to bundle commands, by the config they run
TINY_BUNDLE = {
    "train.yaml": ["--epochs", "1", "--iterations_per_epoch", "2", "--batch_size", "2", "--crop_size", "32"]
    + ["--downsample", "1", "--features", FEATURES, "--device", "cpu"],
    "scm_train.yaml": ["--scm_window", "3"],
    "stage1_infer.yaml": ["--stage1_features", FEATURES, "--stage1_downsample", "1", "--device", "cpu"],
    "mpp.yaml": ["--min_size", "4", "--spread_min_size", "4", "--erosions_per_step", "1"],
}
TINY_WEIGHTS = ["--stage1_features", FEATURES, "--scm_features", FEATURES, "--scm_window", "3"]
TINY_WEIGHTS += ["--stage1_downsample", "1", "--scm_downsample", "1"]
# not run here: installs and shell set-up, the full demo (tests/test_demo.py runs it small),
# torchrun (tests/test_multi_gpu.py runs it)
SKIPPED = ("make", "git", ".", "cd", "torchrun", "emseg demo", "pip install", "napari")  # installs, the GUI


def blocks(path):
    """(language, code) of each fenced block, bash lines joined at trailing backslashes."""
    return [(lang, code.replace("\\\n", " ")) for lang, code in BLOCK.findall(path.read_text())]


def local(text: str) -> str:
    """The repository's bundle wherever the docs say ``bundle/``."""
    return re.sub(r"(?<![\w/])bundle/", f"{ROOT}/bundle/", text)


def run_bundle(argv: list[str]) -> None:
    """``python -m monai.bundle VERB ...`` in this process, parsed by fire as the command line is."""
    verb, args = argv[3], argv[4:]
    if verb == "run":
        configs = " ".join(args[args.index("--config_file") + 1 : args.index("--config_file") + 2])
        for name, extra in TINY_BUNDLE.items():
            if name in configs:
                args = args + extra
        if "inference.yaml" in configs and "--ckpt_dir" in args and "stage1_infer" not in configs:
            args = args + TINY_WEIGHTS + ["--device", "cpu"]
    fire.Fire(getattr(monai.bundle, verb), command=args)


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    """A working directory with the stacks the docs name; the logging set-up is restored afterwards
    (a bundle run applies the bundle's logging.conf, whose handler would outlive pytest's capture)."""
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    (tmp_path / "DATA").mkdir()
    for names, seed in (
        (("stack.tif", "labels.tif"), 3),
        (("other_stack.tif", "other_labels.tif"), 4),
        (("DATA/image.tif", "DATA/label.tif"), 5),
    ):
        image, label = make_synthetic_stack((12, 32, 32), seed=seed)
        write_stack(names[0], image)
        write_stack(names[1], (label > 0).astype(np.uint8) * 255)
    return tmp_path


def test_every_howto_has_runnable_blocks():
    assert {p.name for p in HOWTOS} >= {
        "train_your_own_stack.md",
        "segment_a_large_volume.md",
        "transforms_in_your_pipeline.md",
    }
    assert all(blocks(p) for p in HOWTOS)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_commands_run(doc, workdir, capsys):
    ran = 0
    for lang, code in blocks(doc):
        if lang == "python":
            exec(compile(local(code), f"{doc.name} block", "exec"), {"__name__": "__docs__"})
            ran += 1
            continue
        for line in code.splitlines():
            line = line.split(" #")[0].strip()
            if not line or line.startswith("#") or line.startswith(SKIPPED):
                continue
            argv = shlex.split(local(line))
            if argv[:3] == ["python", "-m", "monai.bundle"]:
                run_bundle(argv)
            else:
                assert argv[0] == "emseg", f"{doc.name}: a command this test does not know: {line}"
                argv = argv[1:] + (TINY_TRAIN if argv[1] == "train" else [])
                assert main(["--quiet", *argv]) == 0, (doc.name, line, capsys.readouterr().err)
            ran += 1
    assert ran, f"{doc.name} has no command to run"


def test_reference_is_up_to_date():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "make_reference.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
