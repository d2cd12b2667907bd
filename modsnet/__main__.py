"""`python -m modsnet` is the `modsnet` command."""

import sys

from modsnet.cli import main

sys.exit(main())
