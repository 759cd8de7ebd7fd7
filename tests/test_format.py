"""The code's form, held by the tests CI runs (`make test`) and not only by `make lint`: the formatter's layout
(`ruff format`, line length from ruff.toml) with no opt-out comments (skip, off), and short functions in the package."""

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("edgedistill", "tests", "benchmarks")
# Lines of a function from its `def` to its last line (decorators not counted). A click command's option list is
# its signature (one parameter a line after formatting), not logic: for a command only its body is counted.
MAX_FUNCTION_LINES = 60


def _python_files(folder: str) -> list[Path]:
    # hidden folders are left out: benchmarks/.external/ holds other projects' code (git-ignored, as ruff leaves it)
    return [path for path in sorted((ROOT / folder).rglob("*.py")) if not any(part.startswith(".") for part in path.parts)]


def test_the_code_is_as_ruff_format_writes_it():
    completed = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", *FOLDERS], cwd=ROOT, capture_output=True, text=True
    )
    assert completed.returncode == 0, (
        f"{completed.stdout}{completed.stderr}\nRun `{sys.executable} -m ruff format {' '.join(FOLDERS)}` "
        "(ruff comes with `pip install -e '.[dev]'`)."
    )


def test_no_line_opts_out_of_the_formatter():
    marker = re.compile(r"#\s*(fmt|yapf):\s*(skip|off|disable)")
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in FOLDERS
        for path in _python_files(folder)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if marker.search(line)
    ]
    assert not found, f"formatter opt-outs in {', '.join(found)}: lay the table out so the formatter's output reads well"


def _is_click_command(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    calls = [decorator.func for decorator in node.decorator_list if isinstance(decorator, ast.Call)]
    return any(isinstance(func, ast.Attribute) and func.attr in ("command", "group") for func in calls)


def _long_functions(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    long = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first_line = node.body[0].lineno if _is_click_command(node) else node.lineno
            lines = node.end_lineno - first_line + 1
            if lines > MAX_FUNCTION_LINES:
                long.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines} lines)")
    return long


def test_package_functions_are_short():
    long = [entry for path in _python_files("edgedistill") for entry in _long_functions(path)]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them into named steps): {'; '.join(long)}"


def test_the_length_check_sees_a_long_function(tmp_path):
    # the check above must be able to fail: 61 lines are found, 60 are not; a click command's parameters are free
    parameters = "".join(f"    option_{index}: int,\n" for index in range(30))
    cases = [
        ("def long_function():\n" + "    x = 1\n" * 60, 1),
        ("def short_function():\n" + "    x = 1\n" * 59, 0),
        ("def long_signature(\n" + parameters + "):\n" + "    x = 1\n" * 40, 1),
        ('@click.command("run")\ndef command(\n' + parameters + "):\n" + "    x = 1\n" * 40, 0),
        ('@click.command("run")\ndef command(\n' + parameters + "):\n" + "    x = 1\n" * 61, 1),
    ]
    for source, expected in cases:
        path = tmp_path / "module.py"
        path.write_text(source, encoding="utf-8")
        assert len(_long_functions(path, root=tmp_path)) == expected, source
