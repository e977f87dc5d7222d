"""``python -m omgclip.cli``: the same as ``omgclip``."""

import sys

from omgclip.cli import main

sys.exit(main())
