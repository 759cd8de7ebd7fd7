"""Keras 3 students: presets, a Distiller, int8 quantization-aware training and full-int8 export, without tf_keras.

tfmot's QAT needs Keras 2 (tf_keras); this package does the same job for Keras 3 models on the TensorFlow
backend, so the int8 model still ends in TFLite Micro:

- :mod:`edgedistill.keras3.models`: Keras 3 versions of the student presets (``cnn``, ``dscnn``, ``mlp``, ``resnet8``);
- :mod:`edgedistill.keras3.distiller`: ``Distiller`` / ``LogitsDistillation`` shaped like ``keras.distillation``;
- :mod:`edgedistill.keras3.qat`: :func:`~edgedistill.keras3.qat.quantize_model` (fake-quant int8, BatchNorm folded,
  ReLU/ReLU6 fused, shared ranges for Concatenate) and the up-front coverage check;
- :mod:`edgedistill.keras3.convert`: :func:`~edgedistill.keras3.convert.convert_qat_model` -> full-int8 ``.tflite`` bytes.

Importing this package imports neither TensorFlow nor Keras; its modules do.
"""

from __future__ import annotations
