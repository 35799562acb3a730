"""Model definitions shared by the trainer and the serving backends (encoders, heads, CCA).

- :mod:`.encoders`: the two VGG encoders (audio, sheet).
- :mod:`.heads`: SimCLR projection head (pre-training) and the linear embedding head.
- :mod:`.cca`: the CCA projection layer.
- :mod:`.crossmodal`: the fine-tuned network, the exported single-pathway wrappers, checkpoints.
"""

from scoreid.models.cca import CCALayer
from scoreid.models.crossmodal import (
    AudioEmbedder,
    CrossModalNet,
    SheetEmbedder,
    load_checkpoint,
    save_checkpoint,
)
from scoreid.models.encoders import VGGEncoder, audio_encoder, sheet_encoder
from scoreid.models.heads import EmbeddingHead, ProjectionHead

__all__ = [
    "AudioEmbedder",
    "CCALayer",
    "CrossModalNet",
    "EmbeddingHead",
    "ProjectionHead",
    "SheetEmbedder",
    "VGGEncoder",
    "audio_encoder",
    "load_checkpoint",
    "save_checkpoint",
    "sheet_encoder",
]
