"""The fine-tuned cross-modal network and the single-modality wrappers that get exported.

:class:`CrossModalNet`: audio encoder + linear head, sheet encoder + linear head, a shared
:class:`~scoreid.models.cca.CCALayer`, then L2 normalisation -> 32-d embeddings in which the
cosine similarity (= dot product) of an audio excerpt and its sheet window is high.

:class:`AudioEmbedder` / :class:`SheetEmbedder` wrap one pathway in eval mode (input tensor ->
L2-normalised embedding); they are what ``trainer/run.py export`` writes to ONNX and what the
torch backend of :mod:`scoreid.inference` runs.

Torch checkpoints (``model.pt``) are ``{"format": TORCH_FORMAT, "config": {...},
"state_dict": {...}}`` and load with ``torch.load(weights_only=True)``. The config holds
``audio_frames``, ``dim`` and the audio encoder's architecture, ``audio_filters`` and
``audio_stem`` (:mod:`scoreid.models.encoders`); a checkpoint without the last two (written before
they existed) is the paper's audio encoder, as is the default network.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from scoreid import contract as C
from scoreid.models.cca import CCALayer
from scoreid.models.encoders import FILTERS, STEM, audio_encoder, sheet_encoder
from scoreid.models.heads import EmbeddingHead

TORCH_FORMAT = "scoreid-torch/1"


class CrossModalNet(nn.Module):
    """Both pathways with the CCA layer; ``forward(audio, sheet) -> (emb_audio, emb_sheet)``.

    ``audio_filters`` / ``audio_stem`` choose a smaller audio encoder (a distilled student); the
    sheet pathway is always the paper's."""

    def __init__(
        self,
        audio_frames: int = C.AUDIO_WINDOW_FRAMES,
        dim: int = C.EMBED_DIM,
        audio_filters: tuple[int, ...] = FILTERS,
        audio_stem: str = STEM,
        audio_lead: int = 0,
    ):
        super().__init__()
        if audio_frames not in C.AUDIO_WINDOW_CHOICES:
            raise ValueError(f"audio window must be one of {C.AUDIO_WINDOW_CHOICES}, got {audio_frames}")
        if not 0 <= audio_lead < audio_frames // 2:
            raise ValueError(f"audio lead must be in [0, {audio_frames // 2}) frames, got {audio_lead}")
        self.audio_frames = audio_frames
        #: frames from the audio window's centre to the music its embedding matches (trained so)
        self.audio_lead = audio_lead
        self.audio_encoder = audio_encoder(audio_frames, audio_filters, audio_stem)
        self.sheet_encoder = sheet_encoder()
        self.audio_head = EmbeddingHead(self.audio_encoder.out_dim, dim)
        self.sheet_head = EmbeddingHead(self.sheet_encoder.out_dim, dim)
        self.cca = CCALayer(dim)

    @property
    def config(self) -> dict[str, Any]:
        """What :meth:`from_config` rebuilds the network from (``audio_lead`` only where not 0, so a
        model trained without one has the config it always had)."""
        cfg: dict[str, Any] = {
            "audio_frames": self.audio_frames,
            "dim": self.cca.dim,
            "audio_filters": list(self.audio_encoder.filters),
            "audio_stem": self.audio_encoder.stem,
        }
        if self.audio_lead:
            cfg["audio_lead"] = self.audio_lead
        return cfg

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> CrossModalNet:
        """The (untrained) network a checkpoint's ``config`` describes."""
        return cls(
            audio_frames=int(cfg["audio_frames"]),
            dim=int(cfg["dim"]),
            audio_filters=tuple(int(f) for f in cfg.get("audio_filters", FILTERS)),
            audio_stem=str(cfg.get("audio_stem", STEM)),
            audio_lead=int(cfg.get("audio_lead", 0)),
        )

    def forward(self, audio: torch.Tensor, sheet: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.audio_head(self.audio_encoder(audio))
        s = self.sheet_head(self.sheet_encoder(sheet))
        a, s = self.cca(a, s)
        return F.normalize(a, dim=1), F.normalize(s, dim=1)

    #: the state-dict entries that decide the sheet embedding: the sheet pathway and its CCA side
    SHEET_SPACE = ("sheet_encoder.", "sheet_head.", "cca.mean_b", "cca.proj_b")

    def sheet_space_digest(self) -> str:
        """sha256 of the tensors that decide :meth:`embed_sheet` (names, dtypes, shapes, bytes):
        two networks with equal digests embed sheets identically, whatever their audio pathways
        (a distilled student and its teacher)."""
        h = hashlib.sha256()
        for name, t in sorted(self.state_dict().items()):
            if name.startswith(self.SHEET_SPACE) and not name.endswith("num_batches_tracked"):
                a = t.detach().cpu().contiguous().numpy()
                h.update(f"{name} {a.dtype} {a.shape}\n".encode())
                h.update(a.tobytes())
        return h.hexdigest()

    def pre_cca_audio(self, audio: torch.Tensor) -> torch.Tensor:
        return self.audio_head(self.audio_encoder(audio))

    def pre_cca_sheet(self, sheet: torch.Tensor) -> torch.Tensor:
        return self.sheet_head(self.sheet_encoder(sheet))

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """Eval-mode audio embedding (uses the CCA buffers)."""
        return F.normalize(self.cca.project_a(self.pre_cca_audio(audio)), dim=1)

    def embed_sheet(self, sheet: torch.Tensor) -> torch.Tensor:
        """Eval-mode sheet embedding (uses the CCA buffers)."""
        return F.normalize(self.cca.project_b(self.pre_cca_sheet(sheet)), dim=1)


class AudioEmbedder(nn.Module):
    """(B, 1, 92, F) -> (B, 32) L2-normalised; the exported audio pathway."""

    def __init__(self, net: CrossModalNet):
        super().__init__()
        self.net = net

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.net.embed_audio(spec)


class SheetEmbedder(nn.Module):
    """(B, 1, 80, 100) -> (B, 32) L2-normalised; the exported sheet pathway."""

    def __init__(self, net: CrossModalNet):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net.embed_sheet(image)


def save_checkpoint(net: CrossModalNet, path: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write ``net`` as a torch checkpoint loadable by :func:`load_checkpoint`."""
    payload: dict[str, Any] = {"format": TORCH_FORMAT, "config": net.config, "state_dict": net.state_dict()}
    if extra:
        payload["extra"] = extra
    torch.save(payload, str(path))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> CrossModalNet:
    """A :class:`CrossModalNet` in eval mode from a checkpoint written by :func:`save_checkpoint`."""
    payload = torch.load(str(path), map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != TORCH_FORMAT:
        raise ValueError(f"{path}: not a scoreid torch checkpoint (format {TORCH_FORMAT})")
    net = CrossModalNet.from_config(payload["config"])
    net.load_state_dict(payload["state_dict"])
    return net.eval()
