"""Errors raised for malformed AutoDL datasets: one type so callers can catch bad input precisely."""


class AutoDLFormatError(ValueError):
    """A dataset on disk does not follow the AutoDL format; the message names the file and the problem."""


class UndecodableRecordError(AutoDLFormatError):
    """One record's image cannot be decoded (e.g. a truncated JPEG): readers skip it and go on with the rest."""
