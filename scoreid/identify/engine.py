"""The per-session identification engine: one hop's neighbours in, the session's answer out.

:class:`SessionEngine` is what every path runs after the audio window has been embedded and
searched — ``scoreid identify`` and the demo in one process (:class:`scoreid.identify.stream.Identifier`),
the services in the aggregator: the window's neighbours vote into the decaying tally
(:mod:`scoreid.identify.tally`), the candidate pieces' score followers advance
(:mod:`scoreid.identify.follow`), and the answer — ranking, positions of the top pieces, identity and
its probability (:mod:`scoreid.identify.confidence`) — is an :class:`Update`.

The whole per-session state round-trips exactly through :meth:`SessionEngine.to_bytes` /
:meth:`SessionEngine.from_bytes`, so a service can keep it in Redis and any replica, or a restarted
process, continues the session where it was. Each part owns its state — the tally
(:meth:`VoteTally.state <scoreid.identify.tally.VoteTally.state>`), the follower's recent windows and
tracks (:meth:`CandidateFollower.state <scoreid.identify.follow.CandidateFollower.state>`, each
track's :meth:`PieceTrack.state <scoreid.identify.follow.PieceTrack.state>`) — and the engine only
frames them with its settings (:func:`frame_state`): a JSON header (numbers as Python's exact float
repr) followed by the parts' raw little-endian arrays (embeddings, the tracks' filters, the
tallies). Loading checks every size against the header, and the parts check theirs against the
library, so a corrupt or foreign blob is an error, never a wrong answer (a track whose piece changed
since is dropped and rebuilt).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from scoreid import contract as C
from scoreid.identify import confidence as K
from scoreid.identify.follow import (
    CANDIDATES,
    EVIDENCE_KINDS,
    KINDS,
    CandidateFollower,
    lag_of,
    library_null,
)
from scoreid.identify.position import Position
from scoreid.identify.tally import (
    CHANCE_EXPONENT,
    DEFAULT_HALF_LIFE_S,
    VOTE_TEMPERATURE,
    VoteTally,
    window_votes,
)
from scoreid.identify.windows import hop_frames_of
from scoreid.library.store import Library

DEFAULT_HOP_S = 0.5  #: seconds of audio between updates (and between the audio windows that vote)
TOP_K = 25  #: neighbours per audio window (published)
POSITIONS = 5  #: pieces of the ranking that get a position
MAX_CANDIDATES = 50
#: weight of the followers' sequence evidence in the order of the top candidates, and its null
#: (:data:`scoreid.identify.follow.EVIDENCE_KINDS`); chosen with the shipped model of 2026-12-04 on both
#: validation sets (RESULTS.md "The shipped model of 2026-12-04"): the length-fair library null at
#: w = 0.1 takes real performances from 0.65/0.72/0.88 (tally alone) to 0.83/0.93/0.93 top-1 at
#: 10/20/30 s, and keeps the synthetic valid split's median time to identify at 4.5 s (tally 4.8 s),
#: where the piece null (w = 0.05) slows it to 5.5 s by favouring long pieces
SEQUENCE_WEIGHT = 0.1
EVIDENCE = "library"
#: the format of :meth:`SessionEngine.to_bytes` (4: a track keeps its rival region, ``guard``; 5: the
#: follower counts the windows it has seen, for the start prior; 6: a track keeps its filter's best
#: state of the previous hop, for its coherence)
MAGIC = b"scoreid-engine/6\n"


class EngineStateError(ValueError):
    """A state blob that cannot be restored (corrupt, truncated, or of another format)."""


@dataclass
class Update:
    """The state after one hop: ``t`` seconds of audio, ranking [(piece, score, votes)], positions,
    and the identity (the top piece once it is identified, else ``None``) with its probability."""

    t: float
    ranking: list[tuple[str, float, float]]
    positions: dict[str, Position] = field(default_factory=dict)
    silent: bool = False
    identity: str | None = None
    confidence: float = 0.0

    def to_json(self, k: int | None = 5, final: bool = False) -> dict[str, Any]:
        top = []
        for pid, score, votes in self.ranking[: k if k else None]:
            entry: dict[str, Any] = {"piece": pid, "score": round(score, 4), "votes": round(votes, 3)}
            pos = self.positions.get(pid)
            if pos is not None:
                entry.update(pos.to_json())
            top.append(entry)
        out: dict[str, Any] = {
            "t": round(self.t, 3),
            "identity": self.identity,
            "confidence": round(self.confidence, 4),
            "top": top,
        }
        if final:
            out["final"] = True
        return out

    @classmethod
    def from_message(cls, msg: Any) -> Update:
        """Read back from a message with the fields of ``scoreid.v1.Identification`` (``t_seconds``,
        ``top`` of ``piece``/``score``/``votes``/``position``, ``identity``, ``confidence``,
        ``silent``): the answer a stack sent, so that :meth:`to_json` prints the line the offline
        engine prints (positions through :meth:`Position.from_message`). The ranking is the top the
        message carries."""
        ranking = [(t.piece, t.score, t.votes) for t in msg.top]
        positions = {t.piece: Position.from_message(t.position) for t in msg.top if t.HasField("position")}
        return cls(
            t=msg.t_seconds,
            ranking=ranking,
            positions=positions,
            silent=bool(msg.silent),
            identity=msg.identity or None,
            confidence=msg.confidence,
        )


def sequence_order(cands: Sequence[tuple[str, float, float]], w: float) -> list[tuple[str, float, float]]:
    """``(piece, tally, sequence evidence)`` in the engine's order of its followed candidates:
    by ``log(tally) + w * evidence`` (``w`` <= 0: by the tally), ties by piece id. The engine ranks
    with it and ``bench/sequence_weight.py`` replays it on dumped candidates."""
    if w <= 0:
        return sorted(cands, key=lambda c: (-c[1], c[0]))
    return sorted(cands, key=lambda c: (-(math.log(max(c[1], 1e-300)) + w * c[2]), c[0]))


@dataclass(frozen=True)
class EngineSettings:
    """What a session's engine is run with (kept in its state, so a restored session keeps them)."""

    hop_s: float = DEFAULT_HOP_S
    half_life: float = DEFAULT_HALF_LIFE_S
    vote_temperature: float = VOTE_TEMPERATURE
    chance_exponent: float = CHANCE_EXPONENT
    follower: str = "guard"
    #: weight of the score followers' sequence evidence in the order of the top candidates (0: the
    #: tally alone orders them; see :meth:`SessionEngine.snapshot`)
    sequence_weight: float = SEQUENCE_WEIGHT
    #: how many of the tally's top pieces are followed (and reordered by their sequence evidence)
    candidates: int = CANDIDATES
    #: the null of the sequence evidence that orders them: "piece" (anywhere in the candidate piece)
    #: or "library" (anywhere in the library: length-fair; :mod:`scoreid.identify.follow`)
    evidence: str = EVIDENCE

    def __post_init__(self) -> None:
        if not (math.isfinite(self.hop_s) and self.hop_s > 0):
            raise ValueError(f"hop must be positive, got {self.hop_s}")
        if not self.half_life > 0:
            raise ValueError(f"half_life must be positive, got {self.half_life}")
        if not self.vote_temperature > 0:
            raise ValueError(f"vote temperature must be positive, got {self.vote_temperature}")
        if self.follower not in KINDS:
            raise ValueError(f"follower kind must be one of {KINDS}, got {self.follower!r}")
        if not (isinstance(self.candidates, int) and 1 <= self.candidates <= MAX_CANDIDATES):
            raise ValueError(f"followed candidates must be 1..{MAX_CANDIDATES}, got {self.candidates!r}")
        if self.evidence not in EVIDENCE_KINDS:
            raise ValueError(f"sequence evidence must be one of {EVIDENCE_KINDS}, got {self.evidence!r}")
        if not (math.isfinite(self.sequence_weight) and self.sequence_weight >= 0):
            raise ValueError(f"sequence weight must be finite and >= 0, got {self.sequence_weight}")

    @property
    def hop_frames(self) -> int:
        return hop_frames_of(self.hop_s)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> EngineSettings:
        """The settings of a service configuration (``ops.config``): the encoder's ``hop_s`` (a
        session's default hop) and the aggregator's ``half_life_s``, ``vote_temperature``,
        ``sequence_weight``, ``candidates`` and ``evidence``; the others keep their defaults.
        ValueError (or TypeError) for a value the engine does not take."""
        a = cfg["aggregator"]
        return cls(
            hop_s=float(cfg["encoder"]["hop_s"]),
            half_life=float(a["half_life_s"]),
            vote_temperature=float(a["vote_temperature"]),
            sequence_weight=float(a["sequence_weight"]),
            candidates=a["candidates"],
            evidence=a["evidence"],
        )


class SessionEngine:
    """Tally, follower and confidence of one session against one library."""

    def __init__(self, library: Library, settings: EngineSettings | None = None):
        if len(library) == 0:
            raise ValueError("the library is empty")
        self.library = library
        self.settings = s = settings or EngineSettings()
        self.chance = library.chance_weights(s.chance_exponent)
        self.tally = VoteTally(s.half_life)
        # the library's model's window and lead
        lag = lag_of(library.contract.audio_window_frames, library.contract.audio_lead_frames)
        self.follower = CandidateFollower(
            library.rows,
            library.meta["strip_x"],
            library.stride,
            s.hop_frames / C.FPS,
            kind=s.follower,
            lag_s=lag,
            max_candidates=s.candidates,
        )
        self.n_voting = 0

    # ------------------------------------------------------------------ one hop
    def vote(self, t: float, embedding: np.ndarray, hits: Sequence[tuple[str, float]]) -> Update:
        """A sounding window at audio time ``t``: its embedding (32,) and its neighbours
        ``[(piece, cosine similarity)]``, best first. Time never runs backwards."""
        if not math.isfinite(t):
            raise ValueError(f"time must be finite, got {t}")
        emb = np.asarray(embedding, np.float32).reshape(-1)
        if emb.shape != (self.library.vectors.shape[1],) or not np.all(np.isfinite(emb)):
            raise ValueError(f"embedding must be {self.library.vectors.shape[1]} finite numbers")
        unknown = sorted({p for p, _ in hits if p not in self.library.rows})
        if unknown:
            raise ValueError(f"hits name pieces that are not in the library: {unknown[:3]}")
        weighted = [(p, float(sim), self.chance.get(p, 1.0)) for p, sim in hits]
        self.tally.update(window_votes(weighted, self.settings.vote_temperature), t)
        self.n_voting += 1
        candidates = [pid for pid, _v in self.tally.top(self.follower.max_candidates)]
        self.follower.update(t, emb, candidates, self._sims, library_null([sim for _p, sim in hits]))
        return self.snapshot(t)

    def silent(self, t: float) -> Update:
        """A silent window: no vote, the answer as it stands."""
        if self.tally.t_last is not None and t < self.tally.t_last:
            raise ValueError(f"time went backwards: {t} < {self.tally.t_last}")
        return self.snapshot(t, silent=True)

    def _sims(self, pid: str, embs: np.ndarray) -> np.ndarray:
        s, e = self.library.rows[pid]
        return np.asarray(embs, np.float32) @ self.library.vectors[s:e].T

    # ------------------------------------------------------------------ the answer
    def snapshot(self, t: float, silent: bool = False) -> Update:
        ranked = self._reorder(self.tally.top(len(self.library.piece_ids)))
        votes = sum(v for _, v in ranked)
        total = votes or 1.0
        ranking = [(pid, v / total, v) for pid, v in ranked]
        positions = {}
        for pid, _s, _v in ranking[:POSITIONS]:
            x = self.follower.position_x(pid)
            if x is not None:
                # the library's mapping has the position's fields
                positions[pid] = Position(**self.library.at_strip_x(pid, x, speed=self.follower.speed(pid)))
        p = K.probability(self._evidence(ranked, votes))
        identity = ranking[0][0] if ranking and p >= K.THRESHOLD else None
        return Update(t, ranking, positions, silent, identity, p)

    def _reorder(self, ranked: list[tuple[str, float]]) -> list[tuple[str, float]]:
        """With ``sequence_weight`` w > 0 the followed candidates (the tally's top ``candidates``) are ordered by
        ``log(tally) + w * sequence evidence``: votes say which pieces match window by window, the
        followers say which of them the stream moves through in order. The rest keep the tally's
        order after them; scores and votes stay the tally's."""
        w = self.settings.sequence_weight
        k = self.follower.max_candidates
        if w <= 0 or len(ranked) < 2:
            return ranked
        kind = self.settings.evidence
        head = sequence_order([(p, v, self.follower.evidence(p, kind)) for p, v in ranked[:k]], w)
        return [(p, v) for p, v, _ev in head] + ranked[k:]

    @property
    def t_last(self) -> float | None:
        return self.tally.t_last

    def evidence(self) -> K.Evidence:
        """What the identity rests on now (:class:`scoreid.identify.confidence.Evidence`)."""
        ranked = self.tally.top(len(self.tally.tallies))
        total = sum(v for _, v in ranked)
        return self._evidence(self._reorder(ranked), total)

    def _evidence(self, ranked: list[tuple[str, float]], total: float) -> K.Evidence:
        coherence = self.follower.coherence(ranked[0][0]) if ranked else 0.0
        hist = self.follower.history
        window_s = self.library.contract.audio_window_frames / C.FPS
        still = K.stillness([h[0] for h in hist], [h[1] for h in hist], window_s)
        seq = margin = 0.0
        if ranked:  # the top piece's sequence evidence and its margin over the best other followed one
            kind = self.settings.evidence
            top = ranked[0][0]
            seq = self.follower.evidence(top, kind)
            rivals = [self.follower.evidence(p, kind) for p in self.follower.tracks if p != top]
            margin = seq - max(rivals, default=0.0)
        return K.evidence_of(self.n_voting, ranked[:2], total, coherence, still, seq, margin)

    def confident(self) -> bool:
        """Whether the top piece is identified (its probability reaches the threshold)."""
        return K.probability(self.evidence()) >= K.THRESHOLD

    # ------------------------------------------------------------------ state
    def to_bytes(self) -> bytes:
        """The session's whole state (see the module docstring): the settings, the number of
        voting hops, and what the tally and the follower say of themselves."""
        return frame_state(
            MAGIC,
            {
                "settings": asdict(self.settings),
                "n_voting": self.n_voting,
                "tally": self.tally.state(),
                "follower": self.follower.state(),
            },
        )

    @classmethod
    def from_bytes(cls, library: Library, blob: bytes) -> SessionEngine:
        """Restore a session saved by :meth:`to_bytes` against ``library``."""
        try:
            return cls._restore(library, blob)
        except EngineStateError:
            raise
        except (
            KeyError,
            TypeError,
            ValueError,
            IndexError,
            AttributeError,
            struct.error,
            UnicodeDecodeError,
        ) as e:
            raise EngineStateError(f"session state cannot be restored: {e}") from None

    @classmethod
    def _restore(cls, library: Library, blob: bytes) -> SessionEngine:
        state = unframe_state(MAGIC, blob)
        eng = cls(library, EngineSettings(**state["settings"]))
        eng.n_voting = int(state["n_voting"])
        eng.tally = VoteTally.from_state(state["tally"], eng.settings.half_life)
        eng.follower.load_state(state["follower"])
        dim = library.vectors.shape[1]
        if any(emb.shape != (dim,) for _t, emb, _null in eng.follower.history):
            raise EngineStateError("session state: embeddings of the wrong shape")
        return eng


#: a JSON object ``{ARRAY: [dtype, shape]}`` in a state's header stands for the next raw array
ARRAY = "__array__"
STATE_DTYPES = ("<f4", "<f8")  #: the arrays a state may hold


def frame_state(magic: bytes, state: Mapping[str, Any]) -> bytes:
    """``magic``, the JSON header (uint32 length first) and the raw arrays of ``state``: a mapping of
    JSON values and numpy arrays (:data:`STATE_DTYPES`) as values of its dicts, at any depth (not
    inside lists); each array is replaced in the header by its dtype and shape."""
    arrays: list[np.ndarray] = []

    def header(m: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(m)
        for k, v in out.items():
            if type(v) is dict:  # (exact type checks: this runs on every sounding hop of the services)
                out[k] = header(v)
            elif type(v) is np.ndarray:
                if v.dtype.str not in STATE_DTYPES:
                    raise TypeError(f"state arrays are {STATE_DTYPES}, got {v.dtype.str} ({k})")
                arrays.append(v)
                out[k] = {ARRAY: [v.dtype.str, list(v.shape)]}
        return out

    head = json.dumps(header(state), separators=(",", ":")).encode()
    return magic + struct.pack("<I", len(head)) + head + b"".join(a.tobytes() for a in arrays)


def unframe_state(magic: bytes, blob: bytes) -> dict[str, Any]:
    """The state :func:`frame_state` wrote (its arrays copied out of ``blob``); EngineStateError for
    another format, a truncated blob, trailing bytes or an array the header cannot describe."""
    if not blob.startswith(magic):
        raise EngineStateError("session state of an unknown format")
    off = len(magic)
    (n_head,) = struct.unpack_from("<I", blob, off)
    off += 4
    if off + n_head > len(blob):
        raise EngineStateError("session state is truncated")
    head = json.loads(blob[off : off + n_head])
    off += n_head

    def array(desc: Any) -> np.ndarray:
        nonlocal off
        dtype, shape = desc
        if dtype not in STATE_DTYPES or not all(type(d) is int and d >= 0 for d in shape):
            raise EngineStateError(f"session state: an array of {dtype} {shape}")
        n = math.prod(shape)
        size = n * np.dtype(dtype).itemsize
        if off + size > len(blob):
            raise EngineStateError("session state is truncated")
        a = np.frombuffer(blob, dtype, n, off).reshape(shape).copy()
        off += size
        return a

    def state(m: dict[str, Any]) -> dict[str, Any]:
        for k, v in m.items():
            if isinstance(v, dict):
                m[k] = array(v[ARRAY]) if v.keys() == {ARRAY} else state(v)
        return m

    if not isinstance(head, dict):
        raise EngineStateError("session state: the header is not a mapping")
    out = state(head)
    if off != len(blob):
        raise EngineStateError("session state has trailing bytes")
    return out
