"""``python -m pathnet ...`` runs the command line (also ``torchrun -m pathnet train --ddp``)."""

import sys

from pathnet.cli import main

if __name__ == "__main__":
    sys.exit(main())
