"""Loading Keras 3 model files as students (the model itself, not a teacher wrapper).

Here and not in :mod:`edgedistill.models`: the fake-quant layers a saved Keras 3 QAT student needs are this
package's, and the models layer stays below it.
"""

from __future__ import annotations

import os

from edgedistill.errors import InputError


def register_layers() -> None:
    """Make the Keras 3 QAT layers known to Keras' loader (a saved QAT student uses them)."""
    try:
        import edgedistill.keras3.layers  # noqa: F401 - registering is importing: the classes are registered serializable
    except InputError:  # Keras 3 on another backend: no QAT layers to register, plain models still load
        pass


def register_layers_for(path: str | os.PathLike | None) -> None:
    """:func:`register_layers` when ``path`` is a Keras 3 ``.keras`` file (a teacher or reference may be one)."""
    from edgedistill.models import is_keras3_file

    if path and is_keras3_file(path):
        register_layers()


def load_keras3_student(path: str | os.PathLike):
    """A Keras 3 ``.keras`` file as a trainable Keras 3 model (a student, or a saved Keras 3 QAT student).

    Checked as every model file (path, code layers unless :func:`trust_model_code`); unlike
    :func:`load_model_file`, which wraps a Keras 3 file in an :class:`ExternalTeacher`, the model itself is returned.
    """
    from edgedistill.models import _check_model_path, _first_line, is_keras3_file, refuse_code_layers, trusted

    path = _check_model_path(path)
    refuse_code_layers(path)
    if not is_keras3_file(path):
        raise InputError(
            f"{path} is not a Keras 3 .keras file; a Keras 3 student (--keras 3) is a model saved by Keras 3 "
            "(`model.save('student.keras')`). For a tf_keras model use --keras 2 (or leave --keras out)."
        )
    from edgedistill.keras3.backend import import_keras3

    keras3, _ = import_keras3()
    register_layers()

    try:
        model = keras3.saving.load_model(path, compile=False, safe_mode=not trusted())
    except Exception as error:  # noqa: BLE001 - Keras raises many types; all mean "this file does not load"
        raise InputError(
            f"Cannot load the Keras 3 model {path}: {_first_line(error)}. Re-save it with Keras 3 "
            "(`model.save('student.keras')`)."
        ) from None
    if not isinstance(model, keras3.Model):
        raise InputError(f"{path} holds a {type(model).__name__}, not a Keras 3 model; save the model itself.")
    return model
