"""Generate the Python code for ``proto/vecdb/v1/*.proto`` into ``vecdb_client/_proto``.

    python proto/generate.py            # rewrite the committed code
    python proto/generate.py --out DIR  # write elsewhere (the freshness test compares)

protoc names modules by proto package (``vecdb.v1``), which would collide with the ``vecdb``
engine package, so the files are written flat into ``vecdb_client/_proto`` and their imports
rewritten to match.
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TARGET = ROOT.parent / "clients" / "python" / "vecdb_client" / "_proto"
PACKAGE = "vecdb_client._proto"
_IMPORT = re.compile(r"^from vecdb\.v1 import ", re.M)


def generate(out: Path) -> list[Path]:
    """Run protoc (grpc_tools) over every .proto and write the rewritten modules to ``out``."""
    from grpc_tools import protoc
    import grpc_tools
    protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "vecdb" / "v1").glob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        rc = protoc.main(["grpc_tools.protoc", f"-I{ROOT}", f"-I{include}", f"--python_out={tmp}",
                          f"--pyi_out={tmp}", f"--grpc_python_out={tmp}", *protos])
        if rc != 0:
            raise SystemExit(f"protoc failed with exit code {rc}")
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for src in sorted((Path(tmp) / "vecdb" / "v1").iterdir()):
            text = _IMPORT.sub(f"from {PACKAGE} import ", src.read_text())
            dst = out / src.name
            dst.write_text(text)
            written.append(dst)
    init = out / "__init__.py"
    init.write_text('"""Generated protobuf and gRPC code for vecdb.v1 (see proto/generate.py)."""\n')
    return [init, *written]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TARGET, help="output directory")
    args = parser.parse_args(argv)
    if args.out == TARGET and TARGET.exists():
        shutil.rmtree(TARGET)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
