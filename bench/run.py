"""Run the benchmark: ``python3 bench/run.py`` (``--help`` for the options).

Works with the system Python alone: it installs what it needs into ``bench/.venv`` and then
runs itself again with that interpreter.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    # Import the harness as the package ``bench`` from the repository root, not as loose
    # modules from this directory.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    from bench.cli import main

    sys.exit(main())
