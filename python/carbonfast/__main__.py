"""`python -m carbonfast`: the `carbonfast` command, where the script is not on PATH."""

import sys

from carbonfast.cli import main

sys.exit(main())
