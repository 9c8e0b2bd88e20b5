"""TEMP shim: the runner functions still live in cli.py on this branch; the runner branch moves them here
(same names and signatures). The merger drops this file in favour of that branch's runner.py."""

from .cli import (NotebookFailed, build_parameters, declared_parameters, execute_run, execute_series,  # noqa: F401
                  list_notebooks, notebooks_dir, select_notebooks, start_run)
