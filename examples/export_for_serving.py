"""Train a model, export its classifier as a SavedModel for TF Serving, and call it.

``km.export_classifier`` writes the classifier alone (no weight network, meta set, optimizer
or attack) with one signature, ``serving_default``: float32 input ``image`` of shape
(batch, 28, 28, 1) -> ``logits`` and ``probabilities``. The script loads the export back
with ``tf.saved_model.load`` and checks that it predicts what the Keras model predicts.
Without ``--model`` it first trains MWAT, the paper's BiLAW with its defaults (tiny-CNN, L-inf
eps 0.1, SGD 0.1 with momentum 0.9, 500 training digits held out as the meta set).

    python examples/export_for_serving.py --out export/clf            # writes export/clf/1
    python examples/export_for_serving.py --model runs/<ts>/model.keras --out export/clf
    python examples/export_for_serving.py --tiny                      # a smoke test

Then (see docs/export.md):

    saved_model_cli show --dir export/clf/1 --tag_set serve --signature_def serving_default
    docker run -p 8501:8501 -v "$PWD/export/clf:/models/clf" -e MODEL_NAME=clf tensorflow/serving
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_mwat as km  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None,
                        help="a trained .keras model to export (default: train one here)")
    parser.add_argument("--out", default=None,
                        help="model base directory; version 1 is written to OUT/1 "
                             "(default: a new temporary directory)")
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--subset", type=int, default=None,
                        help="training digits, meta set included (default: all 3,500)")
    parser.add_argument("--meta-size", type=int, default=500,
                        help="training digits held out as MWAT's meta set")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--tiny", action="store_true",
                        help="train 1 epoch on 128 digits (32 held out) with PGD-2: a smoke test")
    args = parser.parse_args(argv)
    if args.tiny:
        args.epochs, args.subset, args.meta_size, args.batch_size = 1, 128, 32, 32
    return args


def train(args, data):
    """A short MWAT (the paper's BiLAW, its defaults) run with a held-out meta set."""
    keras.utils.set_random_seed(args.seed)
    data = data.with_holdout(meta=args.meta_size, early_stopping=0, seed=args.seed)
    classifier = km.zoo.tiny_cnn(input_shape=data.input_shape, num_classes=data.num_classes)
    steps = 2 if args.tiny else 10
    attack = km.attacks.PGD(eps=0.1, step_size=0.25 / steps, num_steps=steps,
                            value_range=data.value_range)  # step eps/4 for PGD-10
    model = km.MWATModel(classifier, attack=attack, meta_data=data.meta, seed=args.seed)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    model.fit(data.train_dataset(batch_size=args.batch_size, seed=args.seed),
              epochs=args.epochs, verbose=2,
              callbacks=[km.callbacks.EpsilonWarmup(epochs=max(min(3, args.epochs), 1))])
    return model


def main(argv=None) -> str:
    args = parse_args(argv)
    data = km.data.load_embedded(seed=args.seed)
    if args.subset:
        data = data.subset(train=args.subset, validation=32, test=32, seed=args.seed)
    if args.model:
        model = keras.models.load_model(args.model)
        print(f"loaded {args.model}")
    else:
        model = train(args, data)

    base = args.out or tempfile.mkdtemp(prefix="keras_mwat_export_")
    path = km.export_classifier(model, os.path.join(base, str(args.version)),
                                input_name="image", overwrite=args.overwrite)
    print(f"exported SavedModel to {path}")

    # What TF Serving would do: load the SavedModel and call its serving signature.
    serving = tf.saved_model.load(path).signatures["serving_default"]
    print(f"signature inputs: {serving.structured_input_signature[1]}")
    print(f"signature outputs: {serving.structured_outputs}")
    images = data.x_test[:8]
    outputs = serving(image=tf.constant(images))
    served = outputs["logits"].numpy()
    keras_logits = model.predict(images, verbose=0)
    np.testing.assert_allclose(served, keras_logits, atol=1e-4)
    probabilities = outputs["probabilities"].numpy()
    print(f"served predictions: {probabilities.argmax(1).tolist()}  "
          f"(labels {data.y_test[:8].tolist()})")
    print("served logits match the Keras model: True")
    print(f"\nsaved_model_cli show --dir {path} --tag_set serve --signature_def serving_default")
    print(f'docker run -p 8501:8501 -v "{os.path.abspath(base)}:/models/clf" '
          "-e MODEL_NAME=clf tensorflow/serving")
    return path


if __name__ == "__main__":
    main()
