"""The options table of bundle/docs/README.md shows the configs' defaults (it is written by hand;
docs/reference.md is generated and checked in test_docs.py)."""

import re
from pathlib import Path

import pytest
import yaml

from emseg_monai.training.bundle import config_defaults

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "bundle" / "docs" / "README.md"
CONFIGS = ROOT / "bundle" / "configs"
ROW = re.compile(r"^\| (`[^|]+) \| ([^|]+) \| ([^|]*) \|", re.M)


def split_top(text: str) -> list[str]:
    """``text`` split at ", " outside brackets and parentheses."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        if depth == 0 and text.startswith(", ", i):
            parts.append(text[start:i])
            start = i + 2
    return [*parts, text[start:]]


def literal(text: str):
    """A table cell's value as YAML reads it (notes in parentheses and backticks dropped); None if not one.

    Words count only in backticks (`auto`); other text (``cuda if available``) is prose.
    """
    text = re.sub(r"\s*\(.*\)$", "", text.strip())
    quoted = re.fullmatch(r"`[^`]+`", text) is not None
    try:
        value = yaml.safe_load(text.replace("`", ""))
    except yaml.YAMLError:
        return None
    if isinstance(value, str):
        return value if quoted else None
    return value if isinstance(value, (int, float, bool, list)) or value is None else None


def rows():
    """(config file, key, documented value) for each table entry whose value is a plain literal."""
    found = []
    for keys, configs, defaults in ROW.findall(README.read_text()):
        names = [k.strip().strip("`") for k in keys.split(",")]
        names = [names[0].rsplit("_", 1)[0] + n if n.startswith("_") else n for n in names]
        values = split_top(defaults.strip())
        config = re.split(r"[,:]", configs.strip())[0].strip()
        if len(values) != len(names) or not (CONFIGS / f"{config}.yaml").is_file():
            continue
        actual = config_defaults(CONFIGS / f"{config}.yaml")
        for name, text in zip(names, values):
            if str(actual.get(name, "")).startswith("$"):
                continue  # an expression: the table describes it in words
            if literal(text) is not None or text.strip().startswith(("null", "`null")):
                found.append((config, name, literal(text)))
    return found


def test_the_table_has_rows_to_check():
    assert len(rows()) >= 30


@pytest.mark.parametrize("config,key,documented", rows(), ids=lambda v: str(v))
def test_documented_default_is_the_configs(config, key, documented):
    defaults = config_defaults(CONFIGS / f"{config}.yaml")
    assert key in defaults, f"{key} is not a top-level key of {config}.yaml"
    actual = defaults[key]
    if isinstance(actual, float) or isinstance(documented, float):
        assert actual == pytest.approx(documented), (key, actual, documented)
    else:
        assert actual == documented, (key, actual, documented)
