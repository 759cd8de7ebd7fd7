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
