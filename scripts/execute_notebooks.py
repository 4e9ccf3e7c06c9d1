"""Execute every course notebook (or the ones named) into build/notebooks/ and check their outputs.

    python scripts/execute_notebooks.py [notebooks/NN_x.ipynb ...] [--out build/notebooks]

The logic lives in grpo_helpers.notebooks (also `python -m grpo_helpers.notebooks`, `make notebooks`).
"""

import sys

from grpo_helpers.notebooks import main

if __name__ == "__main__":
    sys.exit(main())
