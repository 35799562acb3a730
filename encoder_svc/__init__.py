"""encoder_svc: terminates the client audio stream (gRPC), resamples, computes the incremental
spectrogram, batches windows across sessions and runs the audio encoder (ONNX Runtime on CPU by
default; TensorRT or torch). Imports the core (``scoreid``) and the generated ``proto`` stubs only."""

import ops.blas  # noqa: E402,F401 - one BLAS thread, before numpy loads
