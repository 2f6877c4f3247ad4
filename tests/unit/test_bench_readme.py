"""The README's benchmark tables are filled from the recorded run, and every figure has a source."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_fill():
    spec = importlib.util.spec_from_file_location("fill_readme", ROOT / "bench" / "fill_readme.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_placeholder_has_a_value_from_the_recorded_run() -> None:
    fill = load_fill()
    values = fill.all_values(json.loads((ROOT / "bench" / "results.json").read_text()))
    template = (ROOT / "bench" / "README_tables.md").read_text()
    keys = set(re.findall(r"\{\{(\w+)\}\}", template))
    assert keys, "the template names no figures"
    assert keys <= set(values), f"no value for {sorted(keys - set(values))}"


def test_readme_holds_the_filled_blocks_not_placeholders() -> None:
    readme = (ROOT / "README.md").read_text()
    template = (ROOT / "bench" / "README_tables.md").read_text()
    for name in re.findall(r"<!-- block:(\w+) -->", template):
        block = re.search(rf"<!-- bench:{name} -->\n(.*?)<!-- /bench:{name} -->", readme, re.S)
        assert block, f"README lacks the {name} block"
        assert block.group(1).strip(), f"README's {name} block is empty: run bench/fill_readme.py"
    assert not re.search(r"\{\{\w+\}\}|__[A-Z][A-Z_0-9]*__", readme)


def test_verdicts_and_ratio_formats() -> None:
    fill = load_fill()
    assert fill.verdict({"met": True}) == "met"
    assert fill.verdict({"met": False}) == "**missed**"
    assert fill.verdict({"met": None}) == "reported"
    assert fill.times(0.8032) == "0.80×"
    assert fill.times(141.36) == "141×"
    assert fill.times(33.04) == "33.0×"
    assert fill.fraction(0.0055419) == "1/180"
