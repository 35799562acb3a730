"""The services' versioned gRPC contract (``proto/scoreid/v1/scoreid.proto``) and its committed stubs."""
