"""``python -m chroma``: the ``chroma`` command."""

import sys

from chroma.cli import main

sys.exit(main())
