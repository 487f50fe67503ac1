"""benchmarks/README.md indexes every benchmark script, names only paths that exist, and
names every result file (by its path, a glob or a folder above it)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"

LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\s]+)`")
HEADING_CODE = re.compile(r"^#{2,4} .*$", re.MULTILINE)


def scripts(folder: Path) -> list[str]:
    return sorted(p.name for p in [*folder.glob("*.py"), *folder.glob("*.sh")])


def indexed_scripts(readme: str) -> set[str]:
    """Script names in backticks on the page's headings."""
    return {name for line in HEADING_CODE.findall(readme) for name in CODE.findall(line)}


def named_paths(readme: str, folder: Path) -> dict[str, list[Path]]:
    """Each path the page names (link targets; code spans that are one path under
    results/, benchmarks/ or screenshots/), with the files or folders it resolves to."""
    root = folder.parent
    named: dict[str, list[Path]] = {}
    for target in LINK.findall(readme):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        target = target.split("#", 1)[0]
        named[target] = resolve(folder, target)
    for span in CODE.findall(readme):
        if span.startswith("results/"):
            named[span] = resolve(folder, span)
        elif span.startswith(("benchmarks/results/", "screenshots/")):
            named[span] = resolve(root, span)
    return named


def resolve(base: Path, text: str) -> list[Path]:
    if any(ch in text for ch in "*?["):
        return sorted(base.glob(text))
    path = (base / text).resolve()
    return [path] if path.exists() else []


def missing(readme: str, folder: Path) -> list[str]:
    """Scripts not on the page, and paths it names that do not exist."""
    gone = [s for s in scripts(folder) if s not in indexed_scripts(readme)]
    return gone + [text for text, found in named_paths(readme, folder).items() if not found]


def unnamed_results(readme: str, folder: Path) -> list[str]:
    """Result files the page names by no path, glob or folder (results/ itself aside)."""
    top = (folder / "results").resolve()
    covered = [p for found in named_paths(readme, folder).values() for p in found if p != top]
    files = sorted(p.resolve() for p in (folder / "results").rglob("*") if p.is_file())
    return [
        str(f.relative_to(folder.resolve()))
        for f in files
        if not any(f == c or (c.is_dir() and c in f.parents) for c in covered)
    ]


def test_every_script_is_indexed_and_every_named_path_exists() -> None:
    readme = (BENCHMARKS / "README.md").read_text()
    assert missing(readme, BENCHMARKS) == []


def test_every_result_file_is_named_by_the_index() -> None:
    readme = (BENCHMARKS / "README.md").read_text()
    assert unnamed_results(readme, BENCHMARKS) == []


def fake_benchmarks(tmp_path: Path) -> Path:
    folder = tmp_path / "benchmarks"
    (folder / "results" / "grid").mkdir(parents=True)
    (folder / "a.py").write_text("")
    (folder / "b.sh").write_text("")
    (folder / "results" / "a-h200.json").write_text("{}")
    (folder / "results" / "grid" / "cold.csv").write_text("")
    return folder


def test_a_script_missing_from_the_page_is_reported(tmp_path: Path) -> None:
    folder = fake_benchmarks(tmp_path)
    page = "### `a.py`\n\n[json](results/a-h200.json), [`results/grid/`](results/grid/)\n"
    assert missing(page, folder) == ["b.sh"]
    assert missing(page + "### `b.sh`\n", folder) == []


def test_a_named_path_that_does_not_exist_is_reported(tmp_path: Path) -> None:
    folder = fake_benchmarks(tmp_path)
    page = (
        "### `a.py`, `b.sh`\n\n[json](results/a-h200.json) "
        "`results/renamed-h200.json` `results/grid/*.csv` `results/none/*.csv`\n"
    )
    assert missing(page, folder) == ["results/renamed-h200.json", "results/none/*.csv"]


def test_a_result_file_named_nowhere_is_reported(tmp_path: Path) -> None:
    folder = fake_benchmarks(tmp_path)
    page = "### `a.py`, `b.sh`\n\n[json](results/a-h200.json), [all](results/)\n"
    assert unnamed_results(page, folder) == ["results/grid/cold.csv"]
    assert unnamed_results(page + "`results/grid/`\n", folder) == []
    assert unnamed_results(page + "`results/grid/*.csv`\n", folder) == []
