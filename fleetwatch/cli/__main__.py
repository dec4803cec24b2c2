"""`python -m fleetwatch.cli`: the same as the `fleetwatch` command."""

import sys

from fleetwatch.cli import main

sys.exit(main())
