"""The one exception type for mistakes a user can make.

The CLI turns a ``UserError`` into one line on stderr and a non-zero exit, with no
traceback. Anything else that escapes is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem the user can fix: the message names the problem and the fix, on one line."""

    exit_code = 2
