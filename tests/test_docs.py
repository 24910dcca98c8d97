"""The README and docs/: short enough to read, and every link resolves inside the repository."""
import re
from pathlib import Path

import pytest
from conftest import REPO

from brats_plugin.cli import build_parser

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "tests" / "data" / "README.md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
README_LIMIT_BYTES = 10 * 1024


def _anchors(markdown: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, spaces -> hyphens."""
    headings = re.findall(r"^#+ (.+)$", markdown.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_readme_is_short():
    assert (REPO / "README.md").stat().st_size <= README_LIMIT_BYTES


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_resolves_inside_the_repository(document):
    for target in LINK.findall(document.read_text()):
        if re.match(r"[a-z]+:", target):  # https:, mailto:: outside links are not checked here
            continue
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        assert linked.is_relative_to(REPO), f"{document.name}: {target} leaves the repository"
        assert linked.exists(), f"{document.name}: {target} does not exist"
        if anchor:
            assert anchor in _anchors(linked), f"{document.name}: {target}: no such heading"


def test_readme_names_every_command():
    action = next(a for a in build_parser()._actions if a.dest == "command")
    readme = (REPO / "README.md").read_text()
    for name in action.choices:
        assert f"`brats {name}" in readme, f"brats {name} is missing from the README's command table"
