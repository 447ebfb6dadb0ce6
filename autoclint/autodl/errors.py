"""Errors raised for malformed AutoDL datasets: one type so callers can catch bad input precisely."""


class AutoDLFormatError(ValueError):
    """A dataset on disk does not follow the AutoDL format; the message names the file and the problem."""
