"""scoreid core: the code that training and serving share.

Feature and tensor contract (``contract``, ``tensors``), audio front end (``audio``), sheet
geometry and ingestion (``sheet``), model definitions (``models``), inference backends
(``inference``), nearest-neighbour search (``search``), the sheet library (``library``) and the
identification engine (``identify``). The core imports nothing from the layers around it: the
command line (``cli``), operations (``ops``), synthesis (``synthesis``), the services and the
trainer (``tests/test_layering.py``).
"""

__version__ = "0.1.0"
