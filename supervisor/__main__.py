"""`python -m supervisor` runs the corral command line."""

import sys

from supervisor.cli import main

sys.exit(main())
