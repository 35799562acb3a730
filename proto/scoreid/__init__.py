"""Namespace of the scoreid gRPC API versions."""
