"""What one browser may do, and how the server says no.

The limits of a WebSocket session are those of a stream of the gRPC services (``ops.config``'s
``encoder`` section: message size, chunk length, idle and options timeouts, session length, the
per-client cap; a page bridged to a stack takes that stack's, :meth:`Limits.from_config`); only the
total number of sessions is the page's own. :data:`MAX_SAMPLE` is the services' bound on a float32
sample (:func:`scoreid.audio.io.check_float32_samples`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ops.config import DEFAULTS
from scoreid import contract as C
from scoreid.audio import io

_ENC: dict[str, Any] = DEFAULTS["encoder"]

#: float32 samples beyond this magnitude are refused: the services' bound (``scoreid.audio.io``)
MAX_SAMPLE = io.MAX_SAMPLE
#: a control (text) frame is a small JSON object
MAX_TEXT_BYTES = 4096
#: sessions of one server at once: each runs its own engine and the shared audio encoder in this
#: one process, or holds one stream of a stack (whose ``max_sessions_per_client`` counts this
#: server as one client; the services' ``max_sessions`` is for a stack that scales its encoders out)
DEFAULT_MAX_SESSIONS = 8

# WebSocket close codes (RFC 6455 section 7.4; 4000-4999 are the application's own)
CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED = 1003  #: a frame the protocol does not have (not JSON, unknown type, audio first)
CLOSE_BAD_DATA = 1007  #: a wrong payload: ragged, NaN, out of range, bad start options
CLOSE_POLICY = 1008  #: no start message within the options timeout
CLOSE_TOO_BIG = 1009  #: a frame over the message size, or an audio chunk over the chunk length
CLOSE_ERROR = 1011  #: the server failed (logged)
CLOSE_BUSY = 1013  #: the server, or this client, is at its session limit: try again later
CLOSE_IDLE = 4000  #: no message for the idle timeout
CLOSE_TOO_LONG = 4001  #: the session ran past its maximum length
CLOSE_EMPTY_LIBRARY = 4002  #: the library has no pieces: nothing to identify
CLOSE_UNREACHABLE = 4003  #: the stack the page bridges to is unreachable (or a service of it is down)

#: the ``encoder`` keys of a service configuration that are a session's limits here too
CONFIG_KEYS = (
    "max_message_bytes",
    "max_chunk_seconds",
    "idle_timeout_s",
    "options_timeout_s",
    "max_session_s",
    "max_sessions_per_client",
)


@dataclass(frozen=True)
class Limits:
    """One server's limits (defaults: the services' ``encoder`` section of ``ops.config``)."""

    max_message_bytes: int = int(_ENC["max_message_bytes"])
    max_chunk_seconds: float = float(_ENC["max_chunk_seconds"])
    idle_timeout_s: float = float(_ENC["idle_timeout_s"])
    options_timeout_s: float = float(_ENC["options_timeout_s"])
    max_session_s: float = float(_ENC["max_session_s"])
    max_sessions_per_client: int = int(_ENC["max_sessions_per_client"])
    max_sessions: int = DEFAULT_MAX_SESSIONS

    def __post_init__(self) -> None:
        for name in (
            "max_message_bytes",
            "max_chunk_seconds",
            "idle_timeout_s",
            "options_timeout_s",
            "max_session_s",
            "max_sessions_per_client",
            "max_sessions",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @classmethod
    def from_config(cls, encoder: Mapping[str, Any], **changes: Any) -> Limits:
        """The limits of a stack's ``encoder`` section (:data:`CONFIG_KEYS`), ``changes`` (fields by
        name; None: not changed) over them."""
        given = {k: type(getattr(cls, k))(encoder[k]) for k in CONFIG_KEYS if k in encoder}
        return cls(**{**given, **{k: v for k, v in changes.items() if v is not None}})

    @property
    def max_chunk_samples(self) -> int:
        """Samples of one audio frame at the contract rate."""
        return int(self.max_chunk_seconds * C.SAMPLE_RATE)

    def to_json(self) -> dict[str, Any]:
        return {
            "max_message_bytes": self.max_message_bytes,
            "max_chunk_samples": self.max_chunk_samples,
            "idle_timeout_s": self.idle_timeout_s,
            "options_timeout_s": self.options_timeout_s,
            "max_session_s": self.max_session_s,
        }
