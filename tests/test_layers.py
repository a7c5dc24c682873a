"""Imports go one way: the library never imports the app, and no module imports one from a layer above its own.

Every import is checked, lazy ones inside functions too (they run eventually); imports only for type checkers
(`if TYPE_CHECKING:`) are not, since they never run.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Layers from the bottom up; a module may import its own layer and the ones below. The longest prefix decides.
LAYERS: dict[str, int] = {
    # the δ-mem library
    "deltamem.files": 0, "deltamem.masks": 0, "deltamem.scan": 0, "deltamem.shapes": 0, "deltamem.context": 0,
    "deltamem.rendering": 0, "deltamem.hub": 0, "deltamem.retrieval": 0,
    "deltamem.compat": 1, "deltamem.attention": 1, "deltamem.config": 1, "deltamem.kv_cache": 1,
    "deltamem.quantization": 1,
    "deltamem.memory": 2, "deltamem.model": 2, "deltamem.adapter": 2,
    "deltamem.runtime.contract": 2,
    "deltamem.testing": 3, "deltamem.runtime": 3,
    "deltamem.train": 4, "deltamem.demo": 4, "deltamem.benchmarks": 4, "deltamem.bench": 4,
    "deltamem": 0,
    # the app, above all of the library
    "deltamem_chat": 10, "deltamem_chat.aliases": 10, "deltamem_chat.scoring": 11, "deltamem_chat.transcripts": 12,
    "deltamem_chat.scoring.predictions": 13, "deltamem_chat.library": 13, "deltamem_chat.memory_trace": 10,
    "deltamem_chat.replay": 14, "deltamem_chat.eval": 15,
    "deltamem_chat.remote": 13, "deltamem_chat.server": 14,
    "deltamem_chat.tui": 16, "deltamem_chat.commands": 17, "deltamem_chat.cli": 18,
}


def layer(module: str) -> int | None:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        rank = LAYERS.get(".".join(parts[:n]))
        if rank is not None:
            return rank
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Line numbers of imports under `if TYPE_CHECKING:`."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a project module in `path` that runs (a name imported from a package is
    counted as the submodule it is, when it is one)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_only(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom) or node.lineno in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                      if (ROOT / node.module.replace(".", "/") / f"{alias.name}.py").exists()]
    return [(line, name) for line, name in found if name.split(".")[0] in ("deltamem", "deltamem_chat")]


def wrong_imports(path: Path) -> list[str]:
    here = layer(module_name(path))
    return [f"{path.relative_to(ROOT)}:{line} imports {name}" for line, name in imports(path)
            if (layer(name) or 0) > here]


SOURCES = sorted([*ROOT.glob("deltamem/**/*.py"), *ROOT.glob("deltamem_chat/**/*.py")])


def test_every_module_has_a_layer() -> None:
    assert [module_name(p) for p in SOURCES if layer(module_name(p)) is None] == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_no_import_goes_up_a_layer(path: Path) -> None:
    assert wrong_imports(path) == []


def test_the_check_catches_a_wrong_way_import() -> None:
    planted = ROOT / "deltamem" / "runtime" / "_planted_for_test.py"
    planted.write_text("def f():\n    from deltamem.train import train\n    from deltamem_chat.cli import app\n")
    try:
        assert wrong_imports(planted) == [f"{planted.relative_to(ROOT)}:2 imports deltamem.train",
                                          f"{planted.relative_to(ROOT)}:3 imports deltamem_chat.cli"]
    finally:
        planted.unlink()


def test_training_loads_nothing_of_the_runtime() -> None:
    code = "import deltamem.train, sys; print(sorted(m for m in sys.modules if m.startswith('deltamem.runtime')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


def test_the_command_line_starts_without_torch() -> None:
    code = ("import sys, deltamem_chat.cli; print(sorted({m.split('.')[0] for m in sys.modules} "
            "& {'torch', 'transformers', 'textual'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"
