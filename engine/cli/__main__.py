"""`python -m engine.cli …`: the same command line as `python engine/run.py …` and `taskdiv …`."""

import sys

from engine.cli import main

sys.exit(main())
