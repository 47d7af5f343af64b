"""dettui's training engine (``python -m engine``).

Importing this package does not import torch: the run-folder protocol
(:mod:`engine.protocol`), ``engine.config`` and ``engine.sysinfo`` are torch-free and shared
with the front-ends in ``tui/``.
"""

__version__ = "0.1.0"
