"""The one error type users see as a single line (bad config value, missing data, unreachable store)."""


class UserError(Exception):
    """A problem the user fixes by changing input; the message names the fix."""
