"""One error hierarchy for everything a user can reach.

Every error carries a one-line message that says what was expected, what was found and where,
and an optional hint that says how to fix it. The CLI prints ``error: <message>`` (and the hint)
and exits with the class's ``exit_code``; ``--debug`` shows the traceback.

Exit codes (documented in the README):

====  =====================================================================
0     success
1     a check found problems (``validate`` errors, ``doctor`` failures)
2     usage or configuration error (bad arguments, bad config file)
3     bad input data (malformed file, missing or corrupt image, bad box)
4     store error (not a store, locked by another process, changed on disk)
5     a component is missing or not working (torch, FiftyOne, Label Studio)
130   interrupted (Ctrl-C)
====  =====================================================================
"""

from __future__ import annotations


class DataforgeWarning(UserWarning):
    """Warnings dataforge itself emits (the test suite turns them into errors)."""


class DataforgeError(Exception):
    """Base of every error dataforge raises on purpose."""

    exit_code = 3

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} HINT: {self.hint}"


class UsageError(DataforgeError):
    """Bad arguments, option values or configuration files."""

    exit_code = 2


class DataError(DataforgeError):
    """Bad input data. ``source`` names the file, ``item`` the image/annotation/row."""

    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        item: str | None = None,
        reason: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.source = source
        self.item = item
        self.reason = reason


class ImageError(DataError):
    """An image that is missing, unreadable, corrupt or truncated."""


class StoreError(DataforgeError):
    """The store directory is not a store, is locked, or changed under us."""

    exit_code = 4


class ComponentError(DataforgeError):
    """An optional component (torch, FiftyOne, Label Studio, ...) is missing or broken."""

    exit_code = 5


class PluginError(DataforgeError):
    """A plugin is unknown, broken or registered twice."""

    exit_code = 2
