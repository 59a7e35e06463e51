"""Numbers in README.md and docs/ cannot go stale: each performance or accuracy number stands in
a generated block filled from benchmarks/results/*.json by benchmarks/fill_numbers.py.

After rerunning a benchmark: ``python benchmarks/fill_numbers.py`` rewrites the blocks.

docs/changelog.md only includes CHANGELOG.md, a dated record whose entries keep the numbers
measured when they were written; that file is not scanned. Neither are the docstrings that the
API pages render: their examples are doctests, checked by running them.
"""

import importlib.util
import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _numbers_module():
    spec = importlib.util.spec_from_file_location("numbers_script",
                                                  ROOT / "benchmarks" / "fill_numbers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


numbers = _numbers_module()

# A number followed by a unit of time, a factor (3.1x), a percentage, or written with a mantissa
# and a negative exponent (1.2e-7: a measured error; a parameter such as 1e-8 has no decimals).
_WITH_UNIT = re.compile(
    r"(?<![\w.])\d[\d,]*(?:\.\d+)?\s?(?:s|ms|us|µs|min|minutes?|seconds?|hours?)\b"
    r"|(?<![\w.])\d[\d,]*(?:\.\d+)?[x×](?!\w)"
    r"|(?<![\w.])\d[\d,]*(?:\.\d+)?\s?%"
    r"|(?<![\w.])\d\.\d+e-\d+"
)


def test_every_generated_block_is_up_to_date():
    for page in numbers.pages():
        text = page.read_text()
        assert numbers.fill(text, str(page)) == text, (
            f"{page.relative_to(ROOT)}: stale numbers; run python benchmarks/fill_numbers.py")


def test_there_are_generated_blocks_in_the_readme_and_the_docs():
    readme = (ROOT / "README.md").read_text()
    docs = "".join(p.read_text() for p in (ROOT / "docs").rglob("*.md"))
    for name in numbers.BLOCKS:
        assert f"<!-- numbers: {name} -->" in readme + docs, name
    assert numbers.BLOCK.search(docs)


def test_no_number_with_a_unit_stands_outside_a_generated_block():
    found = []
    for page in numbers.pages():
        text = numbers.BLOCK.sub("", page.read_text())
        for n, line in enumerate(text.splitlines(), 1):
            found += [f"{page.relative_to(ROOT)}: {m.group(0)!r} in {line.strip()[:80]!r}"
                      for m in _WITH_UNIT.finditer(line)]
    assert not found, "\n".join(found)


def test_every_gallery_image_is_captioned_and_shown():
    """Each image of docs/ is a gallery image, with its record (command, commit) in
    benchmarks/results/gallery.json, shown on the gallery page; each recorded image exists."""
    record = numbers._load("gallery")
    recorded = {f["file"] for e in record["entries"].values() for f in e["figures"]}
    assert recorded == {p.name for p in (ROOT / "docs").glob("*.png")}
    page = (ROOT / "docs" / "gallery.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for entry in record["entries"].values():
        assert len(entry["commit"]) >= 7 and entry["command"].startswith("jaxflow ")
        for figure in entry["figures"]:
            assert f"]({figure['file']})" in page and f"](docs/{figure['file']})" in readme


@pytest.mark.parametrize("text", ["took 40 s", "3.1x faster", "within 0.5%", "error 1.2e-7",
                                  "2.95x", "12 minutes", "10.5 us per trajectory"])
def test_the_scan_sees_numbers_with_units(text):
    assert _WITH_UNIT.search(text)


@pytest.mark.parametrize("text", ["sigma0 = 1e-8", "12 depths x 32 ratios", "depth 3",
                                  "2 CPU cores", "e^-10000", "r - 1 = 1e-3"])
def test_the_scan_leaves_other_numbers(text):
    assert not _WITH_UNIT.search(text)


def test_each_block_follows_its_json(monkeypatch):
    real = numbers._load

    def changed(name):
        data = json.loads(json.dumps(real(name)))
        if name == "phase_diagram":
            data["wall_s"], data["max_slope_deviation"] = 987.6, 0.0123
        if name == "toy_throughput":
            data["us_per_trajectory"] = 43.21
        if name == "gallery":
            entry = data["entries"][data["order"][0]]
            entry.update(command="jaxflow phase-diagram --depths 2,3", commit="abc1234",
                         exit_status=3, last_lines=["answered: 5 of 6"])
        if name == "lorenz_ensemble":
            data["rows"][0]["us_per_trajectory"]["jaxflow"] = 12.34
            data["rows"][0]["us_per_trajectory"]["jaxflow_one_device"] = 23.45
        return data

    monkeypatch.setattr(numbers, "_load", changed)
    made_by = ("`jaxflow phase-diagram --depths 2,3` at commit `abc1234`", "answered: 5 of 6")
    for block in (numbers.gallery_page(), numbers.gallery_table()):
        assert all(part in block for part in made_by)
    assert "987.6 s" in numbers.phase_diagram_run()
    assert "1.23%" in numbers.phase_diagram_accuracy()
    assert "43.21 us per trajectory" in numbers.benchmarks_table()
    assert "| 12.34 us; 23.45 us |" in numbers.lorenz_ensemble()
