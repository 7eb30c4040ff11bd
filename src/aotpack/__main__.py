"""``python -m aotpack``: the same command line as ``aotpack``."""

import sys

from .cli import main

sys.exit(main())
