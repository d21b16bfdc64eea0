"""Keras callbacks for adversarial training."""

from __future__ import annotations

import keras

from keras_mwat.validation import check_int


class EpsilonWarmup(keras.callbacks.Callback):
    """Ramps the training attack's radius linearly from 0 to its ``eps``.

    Adversarial training at a large radius from scratch can stall at chance level (MNIST at
    eps 0.3 is the classic case); a short linear warm-up of the radius avoids it. The ramp
    scales the attack's eps and step size together, batch by batch, through the model's
    ``attack_strength`` variable; evaluation (``test_step``) always uses the full radius.

    Args:
        epochs: Number of epochs over which the radius grows to its full value.

    Example:
    ```python
    model.fit(train_ds, epochs=10, callbacks=[keras_mwat.callbacks.EpsilonWarmup(epochs=3)])
    ```
    """

    def __init__(self, epochs: int = 3):
        super().__init__()
        self.epochs = check_int(epochs, "epochs", minimum=1)
        self._epoch = 0

    def _set(self, fraction: float) -> None:
        self.model.attack_strength.assign(min(max(fraction, 0.0), 1.0))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if not (self.params or {}).get("steps"):
            self._set((epoch + 1) / self.epochs)

    def on_train_batch_begin(self, batch, logs=None):
        steps = (self.params or {}).get("steps")
        if steps:
            self._set((self._epoch * steps + batch + 1) / (self.epochs * steps))

    def on_train_end(self, logs=None):
        self._set(1.0)


class RobustValidation(keras.callbacks.Callback):
    """Robust validation every k epochs, best checkpoint by robust accuracy, restore at end.

    Robust overfitting (robust accuracy peaking early, then falling while training goes on)
    is adversarial training's known trap: report and keep the best checkpoint, not only
    the last. Every ``every`` epochs this callback attacks the classifier on ``(x, y)``
    with ``attack`` (default: the model's own training attack), writes the result to the
    logs as ``robust_val_accuracy`` (and ``clean_val_accuracy``), keeps the best weights,
    optionally saves the best model to ``filepath`` (``.keras``), and restores the best
    weights when training ends.

    Args:
        x: Validation inputs.
        y: Validation labels (integer).
        attack: An attack from ``keras_mwat.attacks`` (default: the model's attack).
        every: Validate every this many epochs (and after the last epoch).
        filepath: Where to save the best model (``.keras``), or None.
        restore_best_weights: Put the best weights back when training ends.
        batch_size: Attack and prediction batch size.

    Example:
    ```python
    stronger = keras_mwat.attacks.PGD(eps=0.3, step_size=0.0375, num_steps=20)
    best = keras_mwat.callbacks.RobustValidation(data.x_val, data.y_val, attack=stronger,
                                                 every=2, filepath="best.keras")
    model.fit(train_ds, epochs=10, callbacks=[best])
    print(best.best_epoch, best.best_robust_accuracy)
    ```
    """

    def __init__(self, x, y, attack=None, every: int = 1, filepath=None,
                 restore_best_weights: bool = True, batch_size: int = 256):
        super().__init__()
        self.x = x
        self.y = y
        self.attack = attack
        self.every = check_int(every, "every", minimum=1)
        self.filepath = filepath
        self.restore_best_weights = bool(restore_best_weights)
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.best_robust_accuracy = -1.0
        self.best_epoch = None
        self.best_weights = None
        self.history = []

    def _accuracies(self):
        import numpy as np

        classifier = self.model.classifier
        attack = self.attack or self.model.attack
        y = np.asarray(self.y)

        def correct(inputs):
            logits = classifier.predict(inputs, batch_size=self.batch_size, verbose=0)
            return logits.argmax(axis=1) == y

        x_adv = np.asarray(attack(classifier, self.x, y, batch_size=self.batch_size))
        return float(correct(self.x).mean()), float(correct(x_adv).mean())

    def on_epoch_end(self, epoch, logs=None):
        last = self.params.get("epochs") if self.params else None
        if (epoch + 1) % self.every and epoch + 1 != last:
            return
        clean, robust = self._accuracies()
        self.history.append({"epoch": epoch, "clean": clean, "robust": robust})
        if logs is not None:
            logs["clean_val_accuracy"] = clean
            logs["robust_val_accuracy"] = robust
        if robust > self.best_robust_accuracy:
            self.best_robust_accuracy = robust
            self.best_epoch = epoch
            self.best_weights = self.model.get_weights()
            if self.filepath is not None:
                self.model.save(self.filepath)

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
