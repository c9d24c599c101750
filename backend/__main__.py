"""`python -m backend ...`: the headless ClArC Studio pipeline."""

import sys

from backend.cli import main

sys.exit(main())
