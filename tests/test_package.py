"""The package root: a lazy facade with __all__ and __version__."""

import subprocess
import sys

import edgedistill


def test_import_is_fast_and_does_not_import_tensorflow():
    code = "import sys, edgedistill; assert 'tensorflow' not in sys.modules and 'tf_keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_public_name_resolves():
    missing = [name for name in edgedistill.__all__ if getattr(edgedistill, name, None) is None]
    assert not missing
    assert edgedistill.__version__ and edgedistill.RunConfig().distill.temperature == 4.0


def test_unknown_name_is_an_attribute_error():
    try:
        edgedistill.nope  # noqa: B018
    except AttributeError as error:
        assert "nope" in str(error)
    else:
        raise AssertionError("edgedistill.nope resolved")


def _type_checking_imports(module) -> dict[str, str]:
    """name -> module of the ``if TYPE_CHECKING:`` imports of a package's ``__init__.py``."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    blocks = [node for node in tree.body if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"]
    assert len(blocks) == 1, f"{module.__name__}: one `if TYPE_CHECKING:` block expected"
    return {alias.name: node.module for node in blocks[0].body if isinstance(node, ast.ImportFrom) for alias in node.names}


def test_type_checkers_see_every_lazy_name_from_its_module():
    import edgedistill.distill

    assert _type_checking_imports(edgedistill) == edgedistill._EXPORTS
    assert _type_checking_imports(edgedistill.distill) == edgedistill.distill._LAZY
