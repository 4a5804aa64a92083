from vecdb_client._proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UpsertRequest(_message.Message):
    __slots__ = ("collection", "ids", "vectors", "payloads")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    PAYLOADS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _common_pb2.Ids
    vectors: _common_pb2.Vectors
    payloads: _containers.RepeatedCompositeFieldContainer[_common_pb2.Payload]
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Union[_common_pb2.Ids, _Mapping]] = ..., vectors: _Optional[_Union[_common_pb2.Vectors, _Mapping]] = ..., payloads: _Optional[_Iterable[_Union[_common_pb2.Payload, _Mapping]]] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    def __init__(self, rows: _Optional[int] = ...) -> None: ...

class UpsertAck(_message.Message):
    __slots__ = ("seq", "rows")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    rows: int
    def __init__(self, seq: _Optional[int] = ..., rows: _Optional[int] = ...) -> None: ...

class UpsertArrowRequest(_message.Message):
    __slots__ = ("collection", "arrow_ipc")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    collection: str
    arrow_ipc: bytes
    def __init__(self, collection: _Optional[str] = ..., arrow_ipc: _Optional[bytes] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("collection", "ids", "version")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _common_pb2.Ids
    version: int
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Union[_common_pb2.Ids, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("collection", "ids", "filter")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _common_pb2.Ids
    filter: str
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Union[_common_pb2.Ids, _Mapping]] = ..., filter: _Optional[str] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class CountRequest(_message.Message):
    __slots__ = ("collection", "filter", "version")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    filter: str
    version: int
    def __init__(self, collection: _Optional[str] = ..., filter: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class CountResponse(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class ScrollRequest(_message.Message):
    __slots__ = ("collection", "filter", "limit", "cursor", "output_fields", "with_vectors", "version")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELDS_FIELD_NUMBER: _ClassVar[int]
    WITH_VECTORS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    filter: str
    limit: int
    cursor: str
    output_fields: _common_pb2.FieldList
    with_vectors: bool
    version: int
    def __init__(self, collection: _Optional[str] = ..., filter: _Optional[str] = ..., limit: _Optional[int] = ..., cursor: _Optional[str] = ..., output_fields: _Optional[_Union[_common_pb2.FieldList, _Mapping]] = ..., with_vectors: _Optional[bool] = ..., version: _Optional[int] = ...) -> None: ...

class ScrollResponse(_message.Message):
    __slots__ = ("records", "next_cursor")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    records: _common_pb2.Records
    next_cursor: str
    def __init__(self, records: _Optional[_Union[_common_pb2.Records, _Mapping]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class UpdatePayloadRequest(_message.Message):
    __slots__ = ("collection", "ids", "payloads", "every")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    PAYLOADS_FIELD_NUMBER: _ClassVar[int]
    EVERY_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _common_pb2.Ids
    payloads: _containers.RepeatedCompositeFieldContainer[_common_pb2.Payload]
    every: _common_pb2.Payload
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Union[_common_pb2.Ids, _Mapping]] = ..., payloads: _Optional[_Iterable[_Union[_common_pb2.Payload, _Mapping]]] = ..., every: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ...) -> None: ...

class UpdatePayloadResponse(_message.Message):
    __slots__ = ("updated",)
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    updated: int
    def __init__(self, updated: _Optional[int] = ...) -> None: ...
