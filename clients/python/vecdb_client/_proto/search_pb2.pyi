from vecdb_client._proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SearchRequest(_message.Message):
    __slots__ = ("collection", "queries", "k", "filter", "output_fields", "params", "explain", "version")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.Value, _Mapping]] = ...) -> None: ...
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELDS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    queries: _common_pb2.Vectors
    k: int
    filter: str
    output_fields: _common_pb2.FieldList
    params: _containers.MessageMap[str, _common_pb2.Value]
    explain: bool
    version: int
    def __init__(self, collection: _Optional[str] = ..., queries: _Optional[_Union[_common_pb2.Vectors, _Mapping]] = ..., k: _Optional[int] = ..., filter: _Optional[str] = ..., output_fields: _Optional[_Union[_common_pb2.FieldList, _Mapping]] = ..., params: _Optional[_Mapping[str, _common_pb2.Value]] = ..., explain: _Optional[bool] = ..., version: _Optional[int] = ...) -> None: ...

class QueryHits(_message.Message):
    __slots__ = ("ids", "scores", "payloads")
    IDS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    PAYLOADS_FIELD_NUMBER: _ClassVar[int]
    ids: _common_pb2.Ids
    scores: _containers.RepeatedScalarFieldContainer[float]
    payloads: _containers.RepeatedCompositeFieldContainer[_common_pb2.Payload]
    def __init__(self, ids: _Optional[_Union[_common_pb2.Ids, _Mapping]] = ..., scores: _Optional[_Iterable[float]] = ..., payloads: _Optional[_Iterable[_Union[_common_pb2.Payload, _Mapping]]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("results", "plan_json")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    PLAN_JSON_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[QueryHits]
    plan_json: str
    def __init__(self, results: _Optional[_Iterable[_Union[QueryHits, _Mapping]]] = ..., plan_json: _Optional[str] = ...) -> None: ...
