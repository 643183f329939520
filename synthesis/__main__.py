"""``python -m synthesis`` entry point."""

import sys

from synthesis.cli import main

sys.exit(main())
