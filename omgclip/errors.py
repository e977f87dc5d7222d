"""Errors a user can cause and fix. The CLI prints them as one line, without a traceback."""


class OmgclipError(Exception):
    """An expected mistake (bad input, missing file, wrong checkpoint): shown as one line."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C (see :func:`omgclip.fsutil.sigterm_raises`) so that
    ``finally`` blocks remove temporary files before the process ends."""

    exit_code = 143


class VideoError(OmgclipError):
    """A video that cannot be opened or decoded."""


def one_line(text: str, fallback: str = "failed") -> str:
    """``text`` with all whitespace runs (newlines included) collapsed: one line for the CLI."""
    return " ".join(str(text).split()) or fallback
