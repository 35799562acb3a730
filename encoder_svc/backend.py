"""Loading the audio encoder for the service through the core runtime ``scoreid.inference``.

Backends: ``onnx`` (ONNX Runtime, CPU, the default), ``tensorrt`` (an engine from
``trainer/run.py export``; needs tensorrt and a GPU) and ``torch`` (CPU, or ``device: cuda`` with
``precision: fp16`` on a GPU). ``incremental`` (``encoder.incremental``, default on): the onnx
backend's incremental audio encoder (:mod:`scoreid.incremental`) when the model has its graphs,
each session's state held by its stream (``AudioStream.encoder_state``). The model's manifest contract
must equal this code's (for its audio window length) or the model is refused with a
``ContractError`` naming the differing fields.
"""

from __future__ import annotations

from pathlib import Path

from scoreid import contract as C


def load_served_model(
    model_dir: str | Path,
    backend: str = "onnx",
    threads: int | None = None,
    precision: str | None = None,
    device: str | None = None,
    incremental: bool = True,
):  # -> Encoders
    from scoreid.inference import load_model

    enc = load_model(
        Path(model_dir),
        backend=backend,
        threads=threads,
        precision=precision or None,
        device=device or None,
        incremental=incremental,
    )
    expected = C.with_audio_window(enc.contract.audio_window_frames, enc.contract.audio_lead_frames)
    expected.check_compatible(enc.contract, what=f"model {model_dir}")
    return enc
