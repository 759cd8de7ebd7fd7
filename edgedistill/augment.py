"""Image augmentation with consistent teaching, and the batches training reads.

``--augment`` turns on a random crop after zero padding by 1/8 of the image size and a
horizontal flip (:func:`augmentation_for`: digits get the crop only, since a flipped digit is
another symbol or none; feature vectors and audio get nothing). It works on the raw values
(``uint8`` pixels stay ``uint8``), before any model's preprocessing.

The teacher must see the batch the student sees, so augmentation happens in the input pipeline,
never inside one model:

- **per batch** (``--augment-views 0``): :class:`Batches` yields augmented inputs and labels only;
  the Distiller, finding no cached outputs in the targets, runs the (frozen) teacher on that same
  augmented batch in its training step;
- **cached views** (``--augment-views N``): :class:`ViewCache` draws the crop/flip of ``N`` fixed
  views of every training image, runs the teacher once on each (outputs kept in RAM, or in a
  memory-mapped file above :data:`MAX_IN_MEMORY_BYTES`); each epoch every image is shown as one of
  its views, with the teacher's outputs for exactly that view. This also works for teachers that
  cannot run inside a tf_keras step (Keras 3, SavedModel).

:class:`Batches` also streams data that is memory-mapped on disk, batch by batch, so Keras never
copies a whole split into one tensor.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time
from typing import Any

import numpy as np

from edgedistill._keras import keras

logger = logging.getLogger(__name__)

# Cached teacher outputs larger than this go to a memory-mapped file instead of RAM.
MAX_IN_MEMORY_BYTES = 256 * 1024**2


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Random crop of the image zero-padded by ``pad`` pixels on each side, and a horizontal flip."""

    pad: int
    flip: bool

    def describe(self) -> str:
        return f"random crop after padding {self.pad} px" + (", horizontal flip" if self.flip else "")

    def to_dict(self) -> dict[str, Any]:
        return {"pad_pixels": self.pad, "horizontal_flip": self.flip, "description": self.describe()}

    def draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """Parameters of ``count`` augmentations: rows of (vertical offset, horizontal offset, flip)."""
        offsets = rng.integers(0, 2 * self.pad + 1, size=(count, 2))
        flips = rng.random(count) < 0.5 if self.flip else np.zeros(count, dtype=bool)
        return np.column_stack([offsets, flips]).astype(np.int16)

    def apply(self, x: np.ndarray, parameters: np.ndarray) -> np.ndarray:
        """``x`` (NHWC, any dtype) augmented with one row of ``parameters`` per sample."""
        height, width = x.shape[1:3]
        pad = self.pad
        padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        out = np.empty_like(x)
        for index, (dy, dx, flip) in enumerate(parameters):
            crop = padded[index, dy : dy + height, dx : dx + width]
            out[index] = crop[:, ::-1] if flip else crop
        return out


def augmentation_for(data) -> Augmentation | None:
    """The sensible augmentation of a data set, or ``None`` where it makes no sense."""
    if getattr(data, "audio", None) is not None:
        return None
    height, width = data.input_shape[:2]
    if min(height, width) < 4:  # feature vectors (1 x F) and tiny inputs
        return None
    digits = str(data.name).split(":")[0] in ("digits", "mnist")
    return Augmentation(pad=max(1, round(min(height, width) / 8)), flip=not digits)


class Batches(keras.utils.Sequence):
    """Shuffled training batches of ``x`` with ``targets`` (labels, or a dict of arrays per sample).

    With ``augmentation`` every batch is augmented afresh; with a ``views`` cache each sample is
    one of its cached views, and ``targets["teacher_outputs"]`` is taken from the cache for that view.
    """

    def __init__(
        self,
        x,
        targets,
        *,
        batch_size: int,
        seed: int = 0,
        augmentation: Augmentation | None = None,
        views: "ViewCache | None" = None,
    ) -> None:
        super().__init__()
        self.x, self.targets, self.batch_size = x, targets, int(batch_size)
        self.augmentation, self.views = augmentation, views
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(x))
        self.view_of = self._draw_views()

    def __len__(self) -> int:
        return int(np.ceil(len(self.x) / self.batch_size))

    def _draw_views(self):
        return None if self.views is None else self.rng.integers(0, self.views.num_views, size=len(self.x))

    def __getitem__(self, index: int):
        rows = np.sort(self.order[index * self.batch_size : (index + 1) * self.batch_size])
        x = np.asarray(self.x[rows])
        if self.views is not None:
            views = self.view_of[rows]
            x = self.views.augmentation.apply(x, self.views.parameters[views, rows])
            targets = dict(self.targets) if isinstance(self.targets, dict) else {"labels": self.targets}
            targets = {key: np.asarray(value[rows]) for key, value in targets.items() if key != "teacher_outputs"}
            targets["teacher_outputs"] = np.asarray(self.views.outputs[views, rows])
            return x, targets
        if self.augmentation is not None:
            x = self.augmentation.apply(x, self.augmentation.draw(self.rng, len(rows)))
        if isinstance(self.targets, dict):
            return x, {key: np.asarray(value[rows]) for key, value in self.targets.items()}
        return x, np.asarray(self.targets[rows])

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.x))
        self.view_of = self._draw_views()


def _allocate(shape: tuple[int, ...]) -> np.ndarray:
    if int(np.prod(shape)) * 4 <= MAX_IN_MEMORY_BYTES:
        return np.empty(shape, dtype=np.float32)
    handle, name = tempfile.mkstemp(prefix="edgedistill-teacher-", suffix=".npy")
    os.close(handle)
    array = np.lib.format.open_memmap(name, mode="w+", dtype=np.float32, shape=shape)
    os.unlink(name)  # the mapping stays valid; nothing is left on disk
    logger.info("teacher outputs: %.0f MB, kept in a memory-mapped file rather than RAM", np.prod(shape) * 4 / 1e6)
    return array


@dataclasses.dataclass
class ViewCache:
    """The teacher's outputs on ``num_views`` fixed augmented views of every training image."""

    augmentation: Augmentation
    parameters: np.ndarray  # (views, samples, 3) crop offsets and flip
    outputs: np.ndarray  # (views, samples, classes) logits
    seconds: float

    @property
    def num_views(self) -> int:
        return int(self.parameters.shape[0])

    @classmethod
    def build(cls, teacher, x, augmentation: Augmentation, *, num_views: int, seed: int = 0, chunk: int = 2048) -> "ViewCache":
        """Run ``teacher`` once on each view (``predict_logits`` semantics: probabilities become log-probabilities)."""
        from edgedistill.models import predict_logits

        started = time.perf_counter()
        rng = np.random.default_rng([seed, 7919])
        parameters = np.stack([augmentation.draw(rng, len(x)) for _ in range(num_views)])
        outputs: np.ndarray | None = None
        for view in range(num_views):
            for start in range(0, len(x), chunk):
                rows = slice(start, start + chunk)
                logits = predict_logits(teacher, augmentation.apply(np.asarray(x[rows]), parameters[view, rows]))
                if outputs is None:
                    outputs = _allocate((num_views, len(x), logits.shape[1]))
                outputs[view, rows] = logits
        assert outputs is not None  # a training set is never empty
        seconds = time.perf_counter() - started
        logger.info("   teacher outputs on %d augmented views of %d images: %.1f s", num_views, len(x), seconds)
        return cls(augmentation, parameters, outputs, seconds)


def cached_outputs(teacher, x, *, chunk: int = 8192) -> np.ndarray:
    """The teacher's logits on ``x``, computed once: in RAM, or memory-mapped on disk above
    :data:`MAX_IN_MEMORY_BYTES` (e.g. a million images of a thousand classes)."""
    from edgedistill.models import predict_logits

    outputs = None
    for start in range(0, len(x), chunk):
        logits = predict_logits(teacher, x[start : start + chunk])
        if outputs is None:
            outputs = _allocate((len(x), logits.shape[1]))
        outputs[start : start + len(logits)] = logits
    return outputs if outputs is not None else predict_logits(teacher, x)


def streams(x, y=None) -> bool:
    """Arrays read batch by batch rather than handed to Keras whole: memory-mapped inputs or targets."""
    targets = y.values() if isinstance(y, dict) else [y]
    return isinstance(x, np.memmap) or any(isinstance(t, np.memmap) for t in targets)


__all__ = ["Augmentation", "augmentation_for", "Batches", "ViewCache", "cached_outputs", "streams", "MAX_IN_MEMORY_BYTES"]
