"""The encoder service tests' fixtures (:mod:`svc_fixtures`), made available to every module here
so that each test module imports only the helpers it calls."""

from svc_fixtures import (  # noqa: F401  (fixtures)
    channel_to,
    make_stack,
    random_encoder,
    random_library,
    random_library_dir,
    random_model_dir,
)
