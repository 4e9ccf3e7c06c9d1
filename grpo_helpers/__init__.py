"""grpo_helpers: the tested code behind the grpo-course notebooks.

Import the concept modules you need, e.g. ``from grpo_helpers import config, data, rewards``.
Importing this package is cheap: heavy libraries (torch, transformers, unsloth) load only when used,
so ``unsloth`` can still be imported before ``transformers`` on a GPU.
"""

__version__ = "0.1.0"
