"""Computes the bit-identity snapshot: training, attack and evaluation numbers of the library.

Run as a script, in a process of its own (one intra-op and one inter-op thread, so that the
numbers do not depend on the machine's core count):

    python -m tests.regression.snapshot --record          # rewrites the fixture
    python -m tests.regression.snapshot --out snap.npz    # what tests/regression compares

The snapshot holds, for every method of ``km.METHODS`` (the bilevel ones with a held-out meta
set of 16 validation digits), the classifier's and the weight network's weights and the
logged numbers after 3 training steps (``fit`` on 96 embedded digits, batch 32, seed 0,
``tiny_cnn``; PGD-AT and MWAT also on a BatchNorm ``small_cnn``); the outputs of every
attack of ``km.attacks`` on 16 test digits against a classifier trained clean here; and one
``evaluate_robustness`` report (quick suite, 48 points) with its adversarial inputs.

Arrays of at most ``WHOLE_LIMIT`` elements are stored whole. Larger ones are stored as a
SHA-256 digest of their dtype, shape and bytes (equal digests: ``np.array_equal`` arrays
of one dtype) plus ``PROBE_SIZE`` values at fixed positions, which tell by how much they
differ when they do. The fixture stays a few tens of KB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

WHOLE_LIMIT = 4096
PROBE_SIZE = 256
FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "bit_identity.npz")

#: Report fields that depend on the clock or the installation, not on the computation.
_VOLATILE_REPORT_KEYS = ("duration_seconds", "created", "versions")


def digest(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes."""
    array = np.ascontiguousarray(array)
    header = f"{array.dtype.str}{array.shape}".encode()
    return hashlib.sha256(header + array.tobytes()).hexdigest()


def probe_index(size: int) -> np.ndarray:
    """``PROBE_SIZE`` fixed flat positions of an array of ``size`` elements."""
    return np.random.default_rng(size).choice(size, size=min(size, PROBE_SIZE), replace=False)


def encode(name: str, array, out: dict) -> None:
    """Stores ``array`` under ``name`` in ``out``: whole, or as digest + probe."""
    array = np.asarray(array)
    if array.size <= WHOLE_LIMIT:
        out[f"{name}"] = array
        return
    out[f"{name}#sha256"] = np.array(digest(array))
    out[f"{name}#shape"] = np.array(array.shape, dtype=np.int64)
    out[f"{name}#probe"] = array.reshape(-1)[probe_index(array.size)]


def _pin_threads() -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.set_visible_devices([], "GPU")


def _train_methods(out: dict) -> None:
    import keras

    import keras_mwat as km

    data = km.data.load_embedded()
    x, y = data.x_train[:96], data.y_train[:96]
    meta = (data.x_val[:16], data.y_val[:16])
    cases = [(name, name, "tiny_cnn") for name in km.METHODS]
    cases += [("pgd_at_bn", "pgd_at", "small_cnn_bn"), ("mwat_bn", "mwat", "small_cnn_bn")]
    for case, method, architecture in cases:
        keras.utils.set_random_seed(0)
        if architecture == "tiny_cnn":
            classifier = km.zoo.tiny_cnn(input_shape=(28, 28, 1), num_classes=10)
        else:
            classifier = km.zoo.small_cnn(input_shape=(28, 28, 1), num_classes=10, width=4,
                                          batch_norm=True)
        model_class = km.METHODS[method]
        kwargs = {"meta_data": meta} if issubclass(model_class, km.MWATModel) else {}
        attack = km.attacks.PGD(eps=0.1, step_size=0.025, num_steps=3, random_start=True)
        model = model_class(classifier, attack=attack, seed=0, **kwargs)
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
        history = model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
        for key, values in sorted(history.history.items()):
            encode(f"train/{case}/logs/{key}", np.asarray(values, np.float32), out)
        for i, weight in enumerate(model.classifier.get_weights()):
            encode(f"train/{case}/classifier/{i:02d}", weight, out)
        if hasattr(model, "weight_net"):
            for i, weight in enumerate(model.weight_net.get_weights()):
                encode(f"train/{case}/weight_net/{i:02d}", weight, out)


def _attack_model():
    """A tiny CNN trained clean (plain Keras) for one epoch on 1,024 embedded digits."""
    import keras

    import keras_mwat as km

    data = km.data.load_embedded()
    keras.utils.set_random_seed(0)
    model = km.zoo.tiny_cnn(input_shape=(28, 28, 1), num_classes=10)
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data.x_train[:1024], data.y_train[:1024], batch_size=64, epochs=1,
              shuffle=False, verbose=0)
    return model, data


def _attacks() -> dict:
    from keras_mwat import attacks

    eps = 0.1
    return {
        "PGD": attacks.PGD(eps=eps, step_size=0.025, num_steps=10, seed=1),
        "PGD-L2-restarts": attacks.PGD(eps=1.5, step_size=0.3, num_steps=10, norm="l2",
                                       num_restarts=2, seed=2),
        "FGSM": attacks.FGSM(eps=eps),
        "CWPGD": attacks.CWPGD(eps=eps, step_size=0.025, num_steps=10, seed=3),
        "APGD-CE": attacks.APGD(eps=eps, num_steps=20, seed=4),
        "APGD-T": attacks.APGD(eps=eps, num_steps=20, loss="dlr", targeted=True,
                               num_target_classes=3, seed=5),
        "APGD-CE-L2": attacks.APGD(eps=1.5, norm="l2", num_steps=20, seed=6),
        "FAB": attacks.FAB(eps=eps, num_steps=20, seed=7),
        "FAB-T": attacks.FAB(eps=eps, num_steps=20, targeted=True, num_target_classes=3,
                             seed=8),
        "Square": attacks.Square(eps=eps, num_queries=200, seed=9),
        "Square-L2": attacks.Square(eps=1.5, norm="l2", num_queries=200, seed=10),
    }


def _attack_and_evaluate(out: dict) -> None:
    import keras_mwat as km

    model, data = _attack_model()
    for i, weight in enumerate(model.get_weights()):
        encode(f"attack_model/{i:02d}", weight, out)
    x, y = data.x_test[:16], data.y_test[:16]
    for name, attack in _attacks().items():
        encode(f"attack/{name}", np.asarray(attack(model, x, y)), out)

    report, x_adv = km.evaluate_robustness(
        model, (data.x_test[:48], data.y_test[:48]), eps=0.1, attacks="quick", n=48, seed=0,
        check_points=16, verbose=0, return_adversarial=True)
    fields = report.to_dict()
    for key in _VOLATILE_REPORT_KEYS:
        fields.pop(key, None)
    for entry in fields["attacks"]:
        entry.pop("seconds", None)
    out["evaluation/report"] = np.array(json.dumps(fields, sort_keys=True))
    encode("evaluation/x_adv", np.asarray(x_adv), out)


def compute() -> dict:
    """The snapshot as a dict of NumPy arrays (run in a fresh process: see module doc)."""
    _pin_threads()
    import keras
    import tensorflow as tf

    out: dict = {}
    _train_methods(out)
    _attack_and_evaluate(out)
    out["meta/versions"] = np.array(json.dumps(
        {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__}))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--record", action="store_true", help=f"rewrite {FIXTURE}")
    group.add_argument("--out", help="write the snapshot to this .npz file")
    args = parser.parse_args(argv)
    path = FIXTURE if args.record else args.out
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez_compressed(path, **compute())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
