"""scoreid core: the code that training and serving share.

Feature contract (``contract``), audio front end (``audio``), sheet geometry and ingestion
(``sheet``), model definitions (``models``), synthesis helpers (``synth``) and the ``scoreid``
command line (``cli``). The core imports no service package (``encoder_svc``, ``index_svc``,
``aggregator_svc``) and nothing from ``trainer``; those import the core.
"""

__version__ = "0.1.0"
