"""Export of a trained classifier as a TensorFlow SavedModel for serving.

Only the classifier is exported: a method's weight network, optimizers, attack and metric
trackers are training machinery and stay out of the artifact.
"""

from __future__ import annotations

import os
import re
import uuid

import keras
import tensorflow as tf

from keras_mwat import validation

__all__ = ["export_classifier"]

#: What TensorFlow accepts as a tensor name (and so as a signature input name).
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\-/]*$")


def _classifier_of(model) -> keras.Model:
    """The logits model inside ``model`` (an AdversarialTrainingModel or a Keras model)."""
    from keras_mwat.methods.base import AdversarialTrainingModel

    if isinstance(model, AdversarialTrainingModel):
        return model.classifier
    if isinstance(model, keras.Model):
        return model
    raise TypeError(
        "`model` must be a keras_mwat AdversarialTrainingModel or a Keras logits model "
        f"(keras.Model), got {type(model).__name__}."
    )


def _check_target(path: str, overwrite: bool) -> bool:
    """Raises unless ``path`` may receive the export; returns whether it exists already."""
    if not tf.io.gfile.exists(path):
        return False
    if not tf.io.gfile.isdir(path):
        raise FileExistsError(
            f"Cannot export to path={path!r}: it exists and is not a directory."
        )
    if tf.io.gfile.listdir(path) and not overwrite:
        raise FileExistsError(
            f"Cannot export to path={path!r}: the directory exists and is not empty. Choose "
            "another path, or pass overwrite=True to replace its contents."
        )
    return True


def _replace_contents(classifier: keras.Model, target: str, input_name: str,
                      input_shape: tuple) -> None:
    """Exports into the existing directory ``target``, replacing its contents.

    The directory itself stays (it may be a mount point, e.g. a docker volume): the export is
    staged in a hidden subdirectory, the old entries are moved aside, the new ones moved in,
    and only then are the old ones deleted. On failure the old contents are put back.
    """
    token = uuid.uuid4().hex[:8]
    staging = os.path.join(target, f".export-{token}")
    backup = os.path.join(target, f".replaced-{token}")
    old_entries = [e.rstrip("/") for e in tf.io.gfile.listdir(target)]
    try:
        _write_archive(classifier, staging, input_name, input_shape)
        new_entries = [e.rstrip("/") for e in tf.io.gfile.listdir(staging)]
        tf.io.gfile.mkdir(backup)
        moved_old, moved_new = [], []
        try:
            for entry in old_entries:
                tf.io.gfile.rename(os.path.join(target, entry), os.path.join(backup, entry))
                moved_old.append(entry)
            for entry in new_entries:
                tf.io.gfile.rename(os.path.join(staging, entry), os.path.join(target, entry))
                moved_new.append(entry)
        except Exception:
            for entry in moved_new:
                tf.io.gfile.rename(os.path.join(target, entry), os.path.join(staging, entry))
            for entry in moved_old:
                tf.io.gfile.rename(os.path.join(backup, entry), os.path.join(target, entry))
            raise
        tf.io.gfile.rmtree(backup)
    finally:
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
        # Empty unless putting the old contents back failed: then it keeps them.
        if tf.io.gfile.exists(backup) and not tf.io.gfile.listdir(backup):
            tf.io.gfile.rmtree(backup)


def _write_archive(classifier: keras.Model, directory: str, input_name: str,
                   input_shape: tuple) -> None:
    """Writes the SavedModel of ``classifier`` with its serving signature to ``directory``."""

    def serve(inputs):
        logits = tf.cast(classifier(inputs, training=False), tf.float32)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

    archive = keras.export.ExportArchive()
    archive.track(classifier)
    archive.add_endpoint(
        name="serving_default",
        fn=serve,
        input_signature=[tf.TensorSpec((None, *input_shape), tf.float32, name=input_name)],
    )
    archive.write_out(directory, verbose=False)


def export_classifier(model, path, input_name: str = "image", *,
                      overwrite: bool = False) -> str:
    """Writes a TensorFlow SavedModel of the classifier alone, ready for TF Serving.

    The SavedModel holds the classifier's variables and one signature, ``serving_default``
    (tag set ``serve``): a float32 input named ``input_name`` of shape
    ``(None, *input_shape)`` (any batch size) and two float32 outputs, ``logits`` and
    ``probabilities`` (their softmax), each of shape (n, num_classes). The classifier runs
    in inference mode (BatchNorm moving statistics, no dropout); under mixed precision both
    outputs are still float32. A weight network, optimizers, the attack and the training
    step of an ``AdversarialTrainingModel`` are not exported.

    The export is first written to a hidden staging directory (next to ``path``, or inside
    it when it exists) and moved into place when complete: a failed export leaves ``path``
    as it was, and a serving process watching the parent directory never sees a
    half-written version. An existing directory is kept (it may be a mount point) and only
    its contents are replaced.

    Args:
        model: A ``keras_mwat`` ``AdversarialTrainingModel`` (its ``classifier`` is
            exported) or a built Keras model that maps inputs to logits.
        path: Directory of the SavedModel (``str`` or ``os.PathLike``). It must not exist,
            be an empty directory, or ``overwrite`` must be True.
        input_name: Name of the signature's input (a valid TensorFlow tensor name, e.g.
            ``"image"``).
        overwrite: Replace the contents of an existing non-empty directory at ``path``.

    Returns:
        ``path`` as a string.

    Raises:
        TypeError: If ``model`` is neither an ``AdversarialTrainingModel`` nor a Keras model,
            or ``input_name`` / ``path`` / ``overwrite`` has the wrong type.
        ValueError: If the classifier is not a built single-input logits model, or
            ``input_name`` is not a valid tensor name.
        FileExistsError: If ``path`` is a file, or a non-empty directory and ``overwrite``
            is False.

    Example:
    ```python
    import numpy as np
    import tensorflow as tf
    import keras_mwat as km

    data = km.data.load_embedded().with_holdout(meta=500, early_stopping=0)
    model = km.MWATModel(km.zoo.tiny_cnn(), meta_data=data.meta, seed=0)
    # ... model.compile(...); model.fit(data.train_dataset(), ...)
    km.export_classifier(model, "/tmp/clf/1")   # the classifier alone, no meta set

    serve = tf.saved_model.load("/tmp/clf/1").signatures["serving_default"]
    out = serve(image=np.zeros((2, 28, 28, 1), "float32"))
    out["logits"], out["probabilities"]
    ```

    To serve it with TensorFlow Serving's docker image (the version directory, here ``1``,
    is what TF Serving loads from the model's base directory)::

        docker run -p 8501:8501 -v /tmp/clf/1:/models/clf/1 -e MODEL_NAME=clf \\
            tensorflow/serving

    and query it over REST with ``POST http://localhost:8501/v1/models/clf:predict`` and the
    body ``{"instances": [<image>, ...]}`` (each image a nested list of shape
    ``input_shape``); the answer is ``{"predictions": [{"logits": [...],
    "probabilities": [...]}, ...]}``. ``saved_model_cli show --dir /tmp/clf/1 --all``
    prints the signature.
    """
    classifier = _classifier_of(model)
    if not isinstance(input_name, str):
        raise TypeError(
            f"`input_name` must be a string, got {input_name!r} ({type(input_name).__name__})."
        )
    if not _NAME_PATTERN.match(input_name):
        raise ValueError(
            "`input_name` must be a valid TensorFlow tensor name (letters, digits, '_', '.', "
            f"'-', '/'; not starting with '_', '-' or '/'), got input_name={input_name!r}."
        )
    if not isinstance(overwrite, bool):
        raise TypeError(
            f"`overwrite` must be a bool, got {overwrite!r} ({type(overwrite).__name__})."
        )
    if not isinstance(path, str | os.PathLike):
        raise TypeError(
            f"`path` must be a string or os.PathLike, got {path!r} ({type(path).__name__})."
        )
    path = os.fspath(path)
    if not isinstance(path, str) or not path:
        raise ValueError(f"`path` must be a non-empty directory path, got path={path!r}.")
    input_shape, _ = validation.check_classifier(classifier)

    target = path.rstrip("/\\") or path
    if _check_target(target, overwrite):
        _replace_contents(classifier, target, input_name, input_shape)
    else:
        parent, base = os.path.split(target)
        parent = parent or "."
        tf.io.gfile.makedirs(parent)
        staging = os.path.join(parent, f".{base}.export-{uuid.uuid4().hex[:8]}")
        try:
            _write_archive(classifier, staging, input_name, input_shape)
            tf.io.gfile.rename(staging, target)
        finally:
            if tf.io.gfile.exists(staging):
                tf.io.gfile.rmtree(staging)
    return path
