"""Which running stack the page bridges to, and with what: address, credentials, library, hop.

:func:`stack_target` reads them from the stack's configuration (``ops.config``; the file given to
``scoreid up``, or its defaults): when that configuration's ``state_dir`` holds the record of a
stack running at the address (``stack.json``, :mod:`ops.stack`), the configuration that stack
was started with is read instead — its libraries resolved, the demo library filled in. The
client's credentials are the stack's own, as ``cli/client.py`` sends them: the bearer token
(:func:`ops.config.client_token`: the named client ``web`` of ``encoder.clients_file``, else the
shared ``encoder.token``) and, for a TLS port, the CA certificate (``--tls-ca``, else the
``encoder.tls_cert`` itself: a self-signed certificate is its own CA). The library is the index's
(``index.default_library`` unless named): its name goes in each stream's ``SessionOptions``, and
its directory is opened read-only by the web process for the pieces and page images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from ops.config import client_token, load_config
from ops.stack import read_stack, served_libraries
from scoreid.errors import UserError


@dataclass(frozen=True)
class StackTarget:
    """A running stack's client-facing ``address`` and what a stream to it needs."""

    address: str
    library: str  #: the library's name on the stack (each stream's ``SessionOptions.library``)
    library_dir: Path  #: its directory (the pieces and page images)
    hop_s: float  #: seconds of audio between updates (``SessionOptions.hop_seconds``)
    token: str = ""  #: bearer token ("": none)
    tls_ca: bytes | None = None  #: PEM of the CA of a TLS port (None: plain text)
    max_message_bytes: int = 1 << 20

    @property
    def metadata(self) -> tuple[tuple[str, str], ...] | None:
        return (("authorization", f"Bearer {self.token}"),) if self.token else None

    def channel(self) -> grpc.aio.Channel:
        """A new ``grpc.aio`` channel to the stack (on the running event loop)."""
        opts = [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
        ]
        if self.tls_ca is not None:
            creds = grpc.ssl_channel_credentials(self.tls_ca)
            return grpc.aio.secure_channel(self.address, creds, options=opts)
        return grpc.aio.insecure_channel(self.address, options=opts)


def running_config(address: str, config: str | Path | None = None) -> dict[str, Any]:
    """The configuration of the stack at ``address``: the one it was started with when ``config``'s
    ``state_dir`` records it running there, else ``config`` itself (see the module docstring)."""
    cfg = load_config(config)
    record = read_stack(Path(cfg["state_dir"]).expanduser().resolve())
    if record and record.get("address") == address and Path(record.get("config", "")).is_file():
        return load_config(record["config"])
    return cfg


def stack_target(
    address: str,
    cfg: dict[str, Any],
    library: str | None = None,
    hop_s: float | None = None,
    tls_ca: str | Path | None = None,
) -> StackTarget:
    """The target ``address`` with ``cfg``'s credentials and library (``library``: a name of its
    ``index.libraries``, default the index's default), ``hop_s`` (default ``encoder.hop_s``)."""
    enc = cfg["encoder"]
    libraries = served_libraries(cfg)
    name = library or cfg["index"]["default_library"] or next(iter(libraries))
    if name not in libraries:
        raise UserError(f"the stack serves no library {name!r} (index.libraries: {', '.join(libraries)})")
    if not (libraries[name] / "library.json").is_file():
        raise UserError(f"library {name!r}: {libraries[name]} is not a library directory on this machine")
    ca_file = tls_ca or enc["tls_cert"] or None
    try:
        ca = Path(ca_file).expanduser().read_bytes() if ca_file else None
    except OSError as e:
        raise UserError(f"cannot read the TLS CA certificate {ca_file}: {e.strerror}") from None
    hop = float(enc["hop_s"]) if hop_s is None else hop_s
    return StackTarget(
        address, name, libraries[name], hop, client_token(enc), ca, int(enc["max_message_bytes"])
    )
