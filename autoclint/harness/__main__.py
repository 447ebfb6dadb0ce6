"""`python -m autoclint.harness ...`: the starter kit's command line, runnable from an unpacked submission."""

import logging
import sys

from autoclint.harness.cli import main

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="[%(levelname)s] %(message)s")
    sys.exit(main(sys.argv[1:], emit=print))
