"""The import layers of setup.cfg hold: a wrong import (e.g. micro -> firmware) fails the build."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_layers_are_kept():
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is a dev dependency: pip install -e '.[dev]'"
    result = subprocess.run([lint_imports, str(ROOT / "setup.cfg")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]


def test_import_linter_catches_an_upward_import(tmp_path):
    """The contract is live: the same check on a copy with one upward import fails."""
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    copy = tmp_path / "edgedistill"
    shutil.copytree(ROOT / "edgedistill", copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "config.py", "a") as handle:
        handle.write("\nfrom edgedistill import pipeline  # noqa: E402,F401 - an upward import\n")
    shutil.copy(ROOT / "setup.cfg", tmp_path / "setup.cfg")
    result = subprocess.run(
        [lint_imports, str(tmp_path / "setup.cfg")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0 and "edgedistill.config is not allowed to import edgedistill.pipeline" in result.stdout
