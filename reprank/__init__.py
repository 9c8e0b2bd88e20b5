"""reprank: safety alignment by preference re-ranking and representation-based reward modelling.

A small, readable reproduction of arXiv 2503.10093 on a model that runs on a laptop CPU.
The notebooks in ``notebooks/`` are the lessons; this package holds the logic they share.
"""

__version__ = "0.1.0"
