"""`python -m carbonfast.cli`: the `carbonfast` command."""

import sys

from carbonfast.cli import main

sys.exit(main())
