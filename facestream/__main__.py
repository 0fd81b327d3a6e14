"""``python -m facestream``: the command line."""

import sys

from facestream.stream.cli import main

sys.exit(main())
