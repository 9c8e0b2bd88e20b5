"""Errors a user can act on: one line naming the file, row, field or parameter and what to do.

The command line (``reprank ...``) prints a :class:`UserError` as that one line on stderr and exits with
status 2; ``--debug`` shows the traceback instead. Library code raises these (or their subclasses, such
as ``DataError``) where the fix is in the user's hands, never for a bug of ours.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: the message says what and where."""


EXIT_USER_ERROR = 2
