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
