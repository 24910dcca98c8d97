"""The import graph of docs/design.md: arrows point down (every import counts, lazy ones too)."""
import ast
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "brats_plugin"
#: part -> the parts it must never import. A part is a top-level module or sub-package of brats_plugin.
FORBIDDEN = {
    **{base: {"inference", "export", "evaluation", "app", "cli", "demo", "dataset_conversion", "trainers"}
       for base in ("errors", "releases", "release_choice", "cases", "nifti", "files", "geometry", "volumes",
                    "devices", "version")},
    "evaluation": {"inference", "export", "app", "cli", "demo", "trainers"},
    "export": {"inference", "evaluation", "app", "cli", "demo", "trainers"},
    "inference": {"evaluation", "app", "cli", "demo"},
    "trainers": {"inference", "export", "evaluation", "app", "cli", "demo"},
    "preprocess": {"inference", "export", "evaluation", "app", "cli", "demo", "trainers"},
    "dataset_conversion": {"inference", "export", "evaluation", "app", "cli", "demo"},
    "app": {"cli", "demo"},
}


def _part(module: str) -> str | None:
    """``brats_plugin.export.dicom`` -> ``export``; None outside the package."""
    names = module.split(".")
    return names[1] if names[0] == "brats_plugin" and len(names) > 1 else None


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "brats_plugin":  # from brats_plugin import files, nifti
                found.update(f"brats_plugin.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_arrows_point_down(path):
    part = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    forbidden = FORBIDDEN.get(part, set())
    wrong = sorted(m for m in _imports(path) if _part(m) in forbidden)
    assert not wrong, f"{path.relative_to(REPO)} ({part}) imports {wrong}"
