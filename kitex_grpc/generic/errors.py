"""Errors of the generic converters: a bad value is named by its path in the request."""

from __future__ import annotations

__all__ = ["ConvertError"]


class ConvertError(ValueError):
    """A value that does not fit its IDL type; ``path`` names it (``req.items[2].id``).

    Raised before anything is sent: a generic client refuses the call, a generic server answers the
    request with a decode error.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def join(path: str, name: str) -> str:
    """``path.name`` (or just ``name`` at the top)."""
    return f"{path}.{name}" if path else name
