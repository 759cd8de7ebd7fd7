"""The type check of `make lint` holds: mypy on edgedistill/, configured in setup.cfg ([mypy]).

CI runs `make test`, so the check runs here too; a type error anywhere in edgedistill/ fails the build.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _mypy(*arguments: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    assert importlib.util.find_spec("mypy"), "mypy is a dev dependency: pip install -e '.[dev]'"
    return subprocess.run([sys.executable, "-m", "mypy", *arguments], cwd=cwd, capture_output=True, text=True)


def test_edgedistill_type_checks():
    result = _mypy("--config-file", str(ROOT / "setup.cfg"), "edgedistill")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_the_type_check_reads_function_bodies_without_annotations(tmp_path):
    """The configuration is live: an error inside an unannotated function (check_untyped_defs) is found."""
    (tmp_path / "broken.py").write_text("def total():\n    return 1 + 'one'\n")
    result = _mypy("--config-file", str(ROOT / "setup.cfg"), "--cache-dir", str(tmp_path / "cache"), "broken.py", cwd=tmp_path)
    assert result.returncode == 1 and 'Unsupported operand types for + ("int" and "str")' in result.stdout, result.stdout
