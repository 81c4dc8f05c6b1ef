"""``python -m gepetto``: the ``gepetto`` command (:mod:`gepetto.cli`)."""

import sys

from gepetto.cli import main

if __name__ == "__main__":
    sys.exit(main())
