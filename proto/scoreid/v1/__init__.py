"""Generated Python stubs of ``scoreid.proto`` (API v1); regenerate with ``python -m proto.generate``."""
