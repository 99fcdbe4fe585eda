"""``python -m overfeat.cli``: the ``overfeat`` command."""

import sys

from overfeat.cli import main

sys.exit(main())
