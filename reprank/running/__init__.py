"""Running: run folders, the artifact registry, the notebook runner, parameters, sweeps, reports."""
