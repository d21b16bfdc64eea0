"""Sweep of the weight network's step size α (the paper does not give it).

Trains MWAT (the paper's configuration: tiny-CNN, SGD momentum 0.9 lr 0.1, L-inf eps 0.1,
PGD-10 step eps/4, a held-out meta set; an ε warm-up over the first 3 epochs, without which
PGD-AT itself stays at chance on this small data set with this optimizer) on the embedded
MNIST data for each α and seed, and
records how far the weights move away from uniform (the std of the normalised weights times
the batch size, i.e. relative to a uniform weight), the relative change of the weight
network's parameters, and clean and PGD-20 accuracy on the test split.

    python bench/meta_lr_sweep.py --alphas 10,100,1000,10000 --seeds 0,1 --epochs 6 \
        --json bench/meta_lr_sweep.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def run(alpha: float, seed: int, epochs: int, data, meta) -> dict:
    import keras

    import keras_mwat as km

    keras.utils.set_random_seed(seed)
    attack = km.attacks.PGD(eps=0.1, step_size=0.025, num_steps=10)
    model = km.MWATModel(km.zoo.tiny_cnn(), attack=attack, meta_data=meta, seed=seed)
    before = [v.numpy().copy() for v in model.weight_net.trainable_variables]
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  meta_optimizer=keras.optimizers.SGD(alpha))
    started = time.process_time()
    history = model.fit(*data.train, batch_size=128, epochs=epochs, verbose=0,
                        callbacks=[km.callbacks.EpsilonWarmup(epochs=3)])
    seconds = time.process_time() - started
    after = [v.numpy() for v in model.weight_net.trainable_variables]
    change = float(np.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(after, before)))
                   / np.sqrt(sum((b ** 2).sum() for b in before)))
    report = km.evaluate_robustness(model.classifier, data.test, eps=0.1, attacks="quick",
                                    n=len(data.y_test), seed=0, verbose=0)
    # The normalised weights sum to 1 over a batch of 128: std x 128 is relative to 1/128.
    relative_std = [s * 128 for s in history.history["weight_std"]]
    return {"alpha": alpha, "seed": seed, "epochs": epochs,
            "relative_weight_std_per_epoch": relative_std,
            "weight_net_relative_change": change,
            "meta_loss_per_epoch": history.history["meta_loss"],
            "clean": report.clean_accuracy, "robust": report.robust_accuracy,
            "robust_attacks": [a["name"] for a in report.attacks],
            "cpu_seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alphas", default="1,10,100,1000,10000")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--json", default="bench/meta_lr_sweep.json")
    args = parser.parse_args()

    import keras_mwat as km

    data = km.data.load_embedded(seed=0)  # 3,500 train; its 500 validation images: meta set
    meta = data.validation
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for alpha in [float(a) for a in args.alphas.split(",")]:
            row = run(alpha, seed, args.epochs, data, meta)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if not k.endswith("epoch")}),
                  flush=True)
            with open(args.json, "w") as handle:
                json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
