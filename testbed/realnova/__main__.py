"""`python -m testbed.realnova`: install, start, stop and inspect the real Nova (services.py)."""

import sys

from testbed.realnova.services import main

sys.exit(main())
