"""``python -m sample_projects.demo``."""

import sys

from .runner import main

sys.exit(main())
