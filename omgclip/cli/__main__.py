"""``python -m omgclip.cli``: the same as ``omgclip``."""

from omgclip.cli import run

run()
