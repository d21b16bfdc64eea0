"""PGD-AT of the tiny-CNN with the paper's SGD: Keras's initialisation against PyTorch's.

    python bench/init_check.py keras    # and: python bench/init_check.py torch

Embedded MNIST (3,500 training images), L-inf eps 0.1, PGD-10 step eps/4 from the first step
(no warm-up), the paper's recipe scaled to 10 epochs (SGD lr 0.1, momentum 0.9, coupled
weight decay 5e-4, /10 at epochs 3 and 6), 6 epochs, seed 0; prints the clean training
accuracy and the validation PGD-10 accuracy per epoch. Result in docs/protocol.md.
"""

import sys

import keras

import keras_mwat as km


def main(init: str) -> None:
    data = km.data.load_embedded()
    keras.utils.set_random_seed(0)
    classifier = km.zoo.tiny_cnn()
    if init == "torch":
        km.zoo.torch_init(classifier, seed=0)
    model = km.PGDATModel(classifier, seed=0,
                          attack=km.attacks.PGD(eps=0.1, step_size=0.025, num_steps=10))
    model.compile(optimizer=km.recipes.get("paper").scaled(10).optimizer(28))
    history = model.fit(*data.train, batch_size=128, epochs=6, verbose=0,
                        validation_data=data.validation).history
    print(init, "clean train accuracy", [round(v, 3) for v in history["accuracy"]])
    print(init, "val PGD-10 accuracy", [round(v, 3) for v in history["val_robust_accuracy"]])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "torch")
