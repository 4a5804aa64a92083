"""The committed generated code is what ``proto/generate.py`` makes from the .proto files now."""
from __future__ import annotations

import filecmp
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "clients" / "python" / "vecdb_client" / "_proto"


def test_generated_code_is_fresh(tmp_path):
    pytest.importorskip("grpc_tools")
    spec = importlib.util.spec_from_file_location("proto_generate", ROOT / "proto" / "generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    written = gen.generate(tmp_path)
    fresh = sorted(p.name for p in written)
    committed = sorted(p.name for p in COMMITTED.iterdir() if p.is_file() and p.suffix in (".py", ".pyi"))
    assert fresh == committed, "regenerate: python proto/generate.py"
    stale = [name for name in fresh if not filecmp.cmp(tmp_path / name, COMMITTED / name, shallow=False)]
    assert not stale, f"generated code differs from the .proto files: {stale}; run python proto/generate.py"


def test_engine_and_client_share_types_and_errors():
    import vecdb
    import vecdb_client
    assert vecdb.Hit is vecdb_client.Hit and vecdb.Record is vecdb_client.Record
    for name in vecdb_client.errors.__all__:
        assert getattr(vecdb, name) is getattr(vecdb_client, name)
    assert issubclass(vecdb.StorageFull, vecdb.Unavailable) and vecdb.StorageFull.http_status == 507


def test_client_needs_neither_the_engine_nor_pyarrow():
    """The slim distribution: vecdb_client imports nothing of vecdb, and pyarrow only for Arrow."""
    import subprocess
    import sys
    code = ("import sys; sys.modules['vecdb'] = None; sys.modules['pyarrow'] = None\n"
            "from vecdb_client import Client, AsyncClient, Hit, InvalidArgument\n"
            "from vecdb_client import codec\n"
            "import numpy as np\n"
            "assert codec.vectors_from_pb(codec.vectors_to_pb(np.ones((2, 3)))).shape == (2, 3)\n"
            "Client('127.0.0.1:1').close()\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "clients" / "python",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
