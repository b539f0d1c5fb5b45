"""The one exception type for mistakes a user can fix (bad paths, bad files, bad options)."""


class UserError(Exception):
    """A problem with the user's input; the message says what is wrong and what to do."""
