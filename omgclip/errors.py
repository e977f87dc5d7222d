"""Errors a user can cause and fix. The CLI prints them as one line, without a traceback."""


class OmgclipError(Exception):
    """An expected mistake (bad input, missing file, wrong checkpoint): shown as one line."""


class VideoError(OmgclipError):
    """A video that cannot be opened or decoded."""
