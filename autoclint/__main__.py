"""`python -m autoclint fit | predict | evaluate` (see autoclint.cli)."""

import sys

from autoclint.cli import main

sys.exit(main())
