"""The layers of docs/architecture.md hold: no module imports a higher layer, and the heavy frameworks stay where they belong.

Imports are read from the source (every ``import``/``from`` statement, inside functions too), so a
lazy import that climbs a layer fails as well as a top-level one.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mdafuse"

#: Bottom to top; a module may import its own layer and the layers below it (docs/architecture.md).
LAYERS: list[set[str]] = [
    {"mdafuse.color", "mdafuse.modality", "mdafuse.privacy", "mdafuse.threads"},
    {"mdafuse.io", "mdafuse.metrics", "mdafuse.registration"},
    {"mdafuse.model", "mdafuse.baselines", "mdafuse.data"},
    {"mdafuse.fusion", "mdafuse.scoring", "mdafuse.synthetic", "mdafuse.longitudinal"},
    {"mdafuse.train", "mdafuse.evaluation", "mdafuse.storage", "mdafuse.cohort", "mdafuse.qa"},
    {"mdafuse.jobs"},
    {"mdafuse.commands", "mdafuse.cli", "mdafuse"},
]
#: Third-party packages a layer must not import (directly or lazily).
FORBIDDEN = {
    "torch": {"mdafuse.color", "mdafuse.modality", "mdafuse.privacy", "mdafuse.threads", "mdafuse.io", "mdafuse.metrics", "mdafuse.registration", "mdafuse.storage", "mdafuse.cohort", "mdafuse.qa"},
    "ray": {name for layer in LAYERS[:5] for name in layer},
}


def _component(module: str) -> str:
    """The unit a module belongs to: ``mdafuse.io.dicom`` -> ``mdafuse.io``; ``mdafuse.cli`` stays."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def _layer(component: str) -> int:
    for i, layer in enumerate(LAYERS):
        if component in layer:
            return i
    raise AssertionError(f"{component} has no layer in LAYERS (tests/test_architecture.py) nor in docs/architecture.md")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module == "mdafuse":  # `from mdafuse import storage`: the submodule is what is imported
                found |= {f"mdafuse.{a.name}" for a in node.names}
            elif node.module:
                found.add(node.module)
    return found


MODULES = _modules()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_higher_layer(module):
    mine = _layer(_component(module))
    for imported in _imports(MODULES[module], module):
        top = imported.split(".")[0]
        assert top != "jobs", f"{module} imports the top-level entry scripts ({imported}); the library never does"
        if top == "mdafuse":
            other = _component(imported)
            assert _layer(other) <= mine, f"{module} (layer {mine}) imports {imported} (layer {_layer(other)})"
        for package, layers in FORBIDDEN.items():
            if top == package:
                assert _component(module) not in layers, f"{module} imports {package}"


def test_every_package_has_a_layer():
    components = {_component(m) for m in MODULES}
    assert components <= {c for layer in LAYERS for c in layer}
    documented = (ROOT / "docs/architecture.md").read_text()
    for component in components - {"mdafuse"}:
        assert f"`{component.split('.', 1)[1]}`" in documented, f"docs/architecture.md does not place {component}"


def test_the_checker_catches_a_climbing_import(tmp_path):
    """A metrics module importing torch, or io importing the model, is reported (the check can fail)."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    import torch\n    from mdafuse.model import network\n")
    imports = _imports(bad, "mdafuse.metrics.bad")
    assert "torch" in imports and "mdafuse.model" in imports
    assert _layer(_component("mdafuse.model")) > _layer(_component("mdafuse.metrics"))


def test_importing_the_lower_layers_loads_no_torch_or_ray():
    code = "import sys, mdafuse.metrics, mdafuse.io.dicom, mdafuse.io.nifti, mdafuse.io.pair, mdafuse.privacy, mdafuse.cohort, mdafuse.qa; sys.exit(bool({'torch', 'ray'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], cwd=str(ROOT)).returncode == 0
