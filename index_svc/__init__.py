"""index_svc: serves a sheet library built by ``scoreid library build``: nearest-neighbour search
(exact, FAISS, Milvus) and library administration over gRPC. Imports the core and ``proto`` only."""

import ops.blas  # noqa: E402,F401 - one BLAS thread, before numpy loads
