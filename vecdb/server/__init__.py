"""The gRPC front door (DESIGN §7): ``vecdb serve`` wraps the embedded engine in grpc.aio.

Modules by noun: ``app`` (startup, shutdown, the ``serve`` command), ``servicers`` (thin
convert-call-convert), ``convert`` (numpy/Arrow/protobuf), ``status`` (the one error table),
``config``, ``auth``, ``limits``, ``metrics``, ``demo``.
"""
