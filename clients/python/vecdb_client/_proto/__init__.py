"""Generated protobuf and gRPC code for vecdb.v1 (see proto/generate.py)."""
