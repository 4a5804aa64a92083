"""Layering (DESIGN §2): storage/ and index/ never load the API, checked by import and by AST."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOWER = {"vecdb.storage": ROOT / "storage", "vecdb.index": ROOT / "index"}
API = ("vecdb.collection", "vecdb.database", "vecdb.filter", "vecdb.search", "vecdb.rows", "vecdb.scroll",
       "vecdb.cli", "vecdb.server", "vecdb.rag")
# project modules the lower layers may import (besides each other)
ALLOWED = ("vecdb.errors", "vecdb.storage", "vecdb.index", "vecdb_client.errors")


def _modules() -> list[str]:
    return sorted(f"{pkg}.{p.stem}" if p.stem != "__init__" else pkg
                  for pkg, d in LOWER.items() for p in d.glob("*.py"))


def test_lower_layers_import_without_the_api():
    """Importing each storage/index module loads no API module (fresh interpreter, in order:
    the first module whose import brings in the API is the one named)."""
    code = ("import importlib, json, sys\n"
            "out = {}\n"
            "for name in sys.argv[1:]:\n"
            "    importlib.import_module(name)\n"
            f"    out[name] = sorted(m for m in sys.modules if m.startswith({API!r}))\n"
            "    if out[name]:\n"
            "        break\n"
            "print(json.dumps(out))\n")
    res = subprocess.run([sys.executable, "-c", code, *_modules()], capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    loaded = json.loads(res.stdout.splitlines()[-1])
    assert len(loaded) == len(_modules())
    leaks = {name: mods for name, mods in loaded.items() if mods}
    assert not leaks, f"lower-layer modules load the API: {leaks}"


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in a file, nested ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            base = node.module or ""
            # `from vecdb import x` may name a submodule: judge each name as vecdb.x
            out += ([(node.lineno, f"{base}.{a.name}") for a in node.names]
                    if base in ("vecdb", "vecdb_client") else [(node.lineno, base)])
    return out


@pytest.mark.parametrize("pkg", sorted(LOWER))
def test_lower_layers_import_only_lower_layers(pkg):
    """AST scan: storage/ and index/ import from the project only errors, storage and index."""
    bad = []
    for path in sorted(LOWER[pkg].glob("*.py")):
        for line, mod in _imports(path):
            project = mod.split(".")[0] in ("vecdb", "vecdb_client", "bench", "tests")
            if project and not any(mod == a or mod.startswith(a + ".") for a in ALLOWED):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {mod}")
    assert not bad, "lower layer imports above itself:\n" + "\n".join(bad)


def test_the_scan_sees_a_violation(tmp_path):
    """The AST check is not vacuous: a file importing the API is caught."""
    f = tmp_path / "m.py"
    f.write_text("import numpy\nfrom vecdb import collection\nfrom vecdb.errors import Corruption\n"
                 "def f():\n    from vecdb.database import Database\n")
    assert [m for _, m in _imports(f)] == ["numpy", "vecdb.collection", "vecdb.errors",
                                           "vecdb.database"]


def test_public_names_still_work():
    """The lazy package exposes every public name both ways."""
    import vecdb
    from vecdb import Collection, connect, InvalidArgument  # noqa: F401
    for name in vecdb.__all__:
        assert getattr(vecdb, name) is not None
    assert set(vecdb.__all__) <= set(dir(vecdb))
    with pytest.raises(AttributeError):
        vecdb.no_such_name  # noqa: B018
