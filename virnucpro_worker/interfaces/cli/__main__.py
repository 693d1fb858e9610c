"""`python -m virnucpro_worker.interfaces.cli`, the same as the `virnucpro` command."""

import sys

from .main import main

sys.exit(main())
