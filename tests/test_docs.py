"""The README is a front page and the docs hold together: links resolve, nothing cites a
document that is not in the repository. Plain file reads, no MkDocs needed (CI also runs
`mkdocs build --strict`, which checks the site's own links and anchors)."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"

# The first lines of the README: the two commands a newcomer runs, exactly.
FRONT = """# wansync

```sh
# 1. install and watch it work on the built-in DashScope simulator (no API key needed)
python3 -m venv .venv && . .venv/bin/activate && pip install . && wansync demo

# 2. install and run the tests
python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && python -m pytest -q
```
"""

_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\]\(([^()\s]+)\)")
_HEADING = re.compile(r"^#{1,6} +(.+?) *$", re.M)


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def prose(text: str) -> str:
    """The text without code blocks and code spans: a link written there is an example."""
    return _CODE.sub("", _FENCE.sub("", text))


def links(path: Path) -> list[str]:
    return _LINK.findall(prose(path.read_text()))


def slug(heading: str) -> str:
    """The anchor of a heading, as both GitHub and MkDocs make it for these pages."""
    text = unicodedata.normalize("NFKD", _CODE.sub(lambda m: m.group(0)[1:-1], heading))
    text = re.sub(r"[^\w\s-]", "", text.encode("ascii", "ignore").decode()).strip().lower()
    return re.sub(r"[\s]+", "-", text)


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in _HEADING.findall(_FENCE.sub("", path.read_text()))}


def test_the_readme_starts_with_the_two_commands_and_is_a_front_page() -> None:
    """The two commands come first, exactly as ever; the README stays at most 250 lines."""
    text = README.read_text()
    assert text.startswith(FRONT), "README.md must open with the two commands, unchanged"
    assert len(text.splitlines()) <= 250, len(text.splitlines())


def test_every_relative_link_names_a_file_of_the_repository() -> None:
    """Each relative link in README.md and docs/*.md resolves to a file in the repository,
    and a `#anchor` to a heading of that page."""
    broken = []
    for page in pages():
        for target in links(page):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.is_relative_to(ROOT) or not file.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}: no such file")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{page.relative_to(ROOT)}: {target}: no such heading")
    assert not broken, broken


def test_every_docs_page_is_in_the_site_navigation() -> None:
    """mkdocs.yml's nav names every page of docs/, and only pages that exist."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def walk(node: object) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, list):
            return [p for item in node for p in walk(item)]
        if isinstance(node, dict):
            return [p for value in node.values() for p in walk(value)]
        return []

    nav = walk(config["nav"])
    assert sorted(nav) == sorted(p.name for p in DOCS.glob("*.md"))


def test_nothing_cites_a_document_outside_the_repository() -> None:
    """No README, docs page, code comment or test cites the old contract document: a
    citation names the docs page that says it."""
    word = re.compile(r"\bSP" + r"EC\b")  # spelled in two halves so this file passes
    files = [*pages(), ROOT / "config.example.yaml", ROOT / "mkdocs.yml"]
    for folder in ("wansync", "tests", "bench", "examples", "systemd"):
        files += [p for p in (ROOT / folder).rglob("*") if p.is_file() and p.suffix != ".pyc"]
    hits = []
    for path in files:
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue  # a sample video
        hits += [
            f"{path.relative_to(ROOT)}:{n}"
            for n, line in enumerate(text.splitlines(), 1)
            if word.search(line)
        ]
    assert not hits, hits
