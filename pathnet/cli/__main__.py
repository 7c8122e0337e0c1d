"""``python -m pathnet.cli ...`` runs the command line, as ``python -m pathnet`` does."""

import sys

from pathnet.cli import main

if __name__ == "__main__":
    sys.exit(main())
