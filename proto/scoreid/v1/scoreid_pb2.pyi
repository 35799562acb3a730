from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENCODING_UNSPECIFIED: _ClassVar[Encoding]
    PCM_FLOAT32: _ClassVar[Encoding]
    PCM_INT16: _ClassVar[Encoding]
ENCODING_UNSPECIFIED: Encoding
PCM_FLOAT32: Encoding
PCM_INT16: Encoding

class SessionOptions(_message.Message):
    __slots__ = ("sample_rate", "encoding", "library", "hop_seconds", "top_k", "client_name", "resume_session", "resume_token")
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    HOP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    RESUME_SESSION_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sample_rate: int
    encoding: Encoding
    library: str
    hop_seconds: float
    top_k: int
    client_name: str
    resume_session: str
    resume_token: str
    def __init__(self, sample_rate: _Optional[int] = ..., encoding: _Optional[_Union[Encoding, str]] = ..., library: _Optional[str] = ..., hop_seconds: _Optional[float] = ..., top_k: _Optional[int] = ..., client_name: _Optional[str] = ..., resume_session: _Optional[str] = ..., resume_token: _Optional[str] = ...) -> None: ...

class AudioChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("options", "audio")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    options: SessionOptions
    audio: AudioChunk
    def __init__(self, options: _Optional[_Union[SessionOptions, _Mapping]] = ..., audio: _Optional[_Union[AudioChunk, _Mapping]] = ...) -> None: ...

class PieceScore(_message.Message):
    __slots__ = ("piece", "title", "score", "votes", "position")
    PIECE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    VOTES_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    piece: str
    title: str
    score: float
    votes: float
    position: Position
    def __init__(self, piece: _Optional[str] = ..., title: _Optional[str] = ..., score: _Optional[float] = ..., votes: _Optional[float] = ..., position: _Optional[_Union[Position, _Mapping]] = ...) -> None: ...

class Position(_message.Message):
    __slots__ = ("piece", "page", "system", "x", "y0", "y1", "similarity", "file", "file_page", "show_page", "strip_x")
    PIECE_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y0_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    FILE_PAGE_FIELD_NUMBER: _ClassVar[int]
    SHOW_PAGE_FIELD_NUMBER: _ClassVar[int]
    STRIP_X_FIELD_NUMBER: _ClassVar[int]
    piece: str
    page: int
    system: int
    x: float
    y0: float
    y1: float
    similarity: float
    file: str
    file_page: int
    show_page: int
    strip_x: float
    def __init__(self, piece: _Optional[str] = ..., page: _Optional[int] = ..., system: _Optional[int] = ..., x: _Optional[float] = ..., y0: _Optional[float] = ..., y1: _Optional[float] = ..., similarity: _Optional[float] = ..., file: _Optional[str] = ..., file_page: _Optional[int] = ..., show_page: _Optional[int] = ..., strip_x: _Optional[float] = ...) -> None: ...

class Identification(_message.Message):
    __slots__ = ("session_id", "seq", "seconds", "top", "position", "latency_ms", "final", "identity", "confidence", "t_seconds", "resume_token", "silent", "voting")
    class LatencyMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    T_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SILENT_FIELD_NUMBER: _ClassVar[int]
    VOTING_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    seq: int
    seconds: float
    top: _containers.RepeatedCompositeFieldContainer[PieceScore]
    position: Position
    latency_ms: _containers.ScalarMap[str, float]
    final: bool
    identity: str
    confidence: float
    t_seconds: float
    resume_token: str
    silent: bool
    voting: int
    def __init__(self, session_id: _Optional[str] = ..., seq: _Optional[int] = ..., seconds: _Optional[float] = ..., top: _Optional[_Iterable[_Union[PieceScore, _Mapping]]] = ..., position: _Optional[_Union[Position, _Mapping]] = ..., latency_ms: _Optional[_Mapping[str, float]] = ..., final: _Optional[bool] = ..., identity: _Optional[str] = ..., confidence: _Optional[float] = ..., t_seconds: _Optional[float] = ..., resume_token: _Optional[str] = ..., silent: _Optional[bool] = ..., voting: _Optional[int] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("shape", "data")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("audio",)
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    audio: Tensor
    def __init__(self, audio: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("embeddings", "model")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    embeddings: Tensor
    model: str
    def __init__(self, embeddings: _Optional[_Union[Tensor, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("library", "queries", "k")
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    library: str
    queries: Tensor
    k: int
    def __init__(self, library: _Optional[str] = ..., queries: _Optional[_Union[Tensor, _Mapping]] = ..., k: _Optional[int] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("row", "score", "piece", "page", "system", "x", "y0", "y1", "chance_weight")
    ROW_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    PIECE_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y0_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    CHANCE_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    row: int
    score: float
    piece: str
    page: int
    system: int
    x: float
    y0: float
    y1: float
    chance_weight: float
    def __init__(self, row: _Optional[int] = ..., score: _Optional[float] = ..., piece: _Optional[str] = ..., page: _Optional[int] = ..., system: _Optional[int] = ..., x: _Optional[float] = ..., y0: _Optional[float] = ..., y1: _Optional[float] = ..., chance_weight: _Optional[float] = ...) -> None: ...

class HitList(_message.Message):
    __slots__ = ("hits",)
    HITS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[HitList]
    def __init__(self, results: _Optional[_Iterable[_Union[HitList, _Mapping]]] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ("library",)
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    library: str
    def __init__(self, library: _Optional[str] = ...) -> None: ...

class LibraryInfo(_message.Message):
    __slots__ = ("name", "vectors", "backend", "titles", "model_sha256")
    class TitlesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    TITLES_FIELD_NUMBER: _ClassVar[int]
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    vectors: int
    backend: str
    titles: _containers.ScalarMap[str, str]
    model_sha256: str
    def __init__(self, name: _Optional[str] = ..., vectors: _Optional[int] = ..., backend: _Optional[str] = ..., titles: _Optional[_Mapping[str, str]] = ..., model_sha256: _Optional[str] = ...) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("libraries", "default_library")
    LIBRARIES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_LIBRARY_FIELD_NUMBER: _ClassVar[int]
    libraries: _containers.RepeatedCompositeFieldContainer[LibraryInfo]
    default_library: str
    def __init__(self, libraries: _Optional[_Iterable[_Union[LibraryInfo, _Mapping]]] = ..., default_library: _Optional[str] = ...) -> None: ...

class IngestRequest(_message.Message):
    __slots__ = ("library", "piece", "title", "composer", "pdf", "pages")
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    PIECE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    COMPOSER_FIELD_NUMBER: _ClassVar[int]
    PDF_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    library: str
    piece: str
    title: str
    composer: str
    pdf: bytes
    pages: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, library: _Optional[str] = ..., piece: _Optional[str] = ..., title: _Optional[str] = ..., composer: _Optional[str] = ..., pdf: _Optional[bytes] = ..., pages: _Optional[_Iterable[bytes]] = ...) -> None: ...

class IngestResponse(_message.Message):
    __slots__ = ("piece", "vectors_added")
    PIECE_FIELD_NUMBER: _ClassVar[int]
    VECTORS_ADDED_FIELD_NUMBER: _ClassVar[int]
    piece: str
    vectors_added: int
    def __init__(self, piece: _Optional[str] = ..., vectors_added: _Optional[int] = ...) -> None: ...

class VoteRequest(_message.Message):
    __slots__ = ("session_id", "t_seconds", "half_life", "hits", "top_k", "embedding", "library", "hop_seconds", "search_k")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    T_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HALF_LIFE_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    HOP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_K_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    t_seconds: float
    half_life: float
    hits: HitList
    top_k: int
    embedding: Tensor
    library: str
    hop_seconds: float
    search_k: int
    def __init__(self, session_id: _Optional[str] = ..., t_seconds: _Optional[float] = ..., half_life: _Optional[float] = ..., hits: _Optional[_Union[HitList, _Mapping]] = ..., top_k: _Optional[int] = ..., embedding: _Optional[_Union[Tensor, _Mapping]] = ..., library: _Optional[str] = ..., hop_seconds: _Optional[float] = ..., search_k: _Optional[int] = ...) -> None: ...

class VoteResponse(_message.Message):
    __slots__ = ("top", "position", "t_seconds", "total", "identity", "confidence", "voting")
    TOP_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    T_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    VOTING_FIELD_NUMBER: _ClassVar[int]
    top: _containers.RepeatedCompositeFieldContainer[PieceScore]
    position: Position
    t_seconds: float
    total: float
    identity: str
    confidence: float
    voting: int
    def __init__(self, top: _Optional[_Iterable[_Union[PieceScore, _Mapping]]] = ..., position: _Optional[_Union[Position, _Mapping]] = ..., t_seconds: _Optional[float] = ..., total: _Optional[float] = ..., identity: _Optional[str] = ..., confidence: _Optional[float] = ..., voting: _Optional[int] = ...) -> None: ...

class VoteBatchRequest(_message.Message):
    __slots__ = ("votes",)
    VOTES_FIELD_NUMBER: _ClassVar[int]
    votes: _containers.RepeatedCompositeFieldContainer[VoteRequest]
    def __init__(self, votes: _Optional[_Iterable[_Union[VoteRequest, _Mapping]]] = ...) -> None: ...

class VoteResult(_message.Message):
    __slots__ = ("response", "code", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: VoteResponse
    code: int
    error: str
    def __init__(self, response: _Optional[_Union[VoteResponse, _Mapping]] = ..., code: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class VoteBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[VoteResult]
    def __init__(self, results: _Optional[_Iterable[_Union[VoteResult, _Mapping]]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("session_id", "top_k")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    top_k: int
    def __init__(self, session_id: _Optional[str] = ..., top_k: _Optional[int] = ...) -> None: ...

class CloseRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class CloseResponse(_message.Message):
    __slots__ = ("existed",)
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    def __init__(self, existed: _Optional[bool] = ...) -> None: ...
