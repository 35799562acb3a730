"""The user-facing error type: the CLI prints its message as one line and exits non-zero."""

from __future__ import annotations


class UserError(Exception):
    """An error the user can fix (bad input, missing file or model). ``exit_code`` defaults to 2."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code
