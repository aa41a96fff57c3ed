"""`python -m snapcopy_cli`: the same as the `snapcopy` command."""

import sys

from snapcopy_cli.main import main

sys.exit(main())
