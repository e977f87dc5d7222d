import sys

from omgclip.cli import main

sys.exit(main())
