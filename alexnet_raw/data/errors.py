"""DataError: the one exception of the data package.

A subclass of ValueError, so callers that already catch bad input keep working. Every message names
the file or directory at fault and what was expected there, because a user with a million-image
folder needs to know which file to delete, not that "an image" failed."""


class DataError(ValueError):
    """A dataset path, file or image that cannot be used; the message names it and what was expected."""
