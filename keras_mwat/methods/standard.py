"""Standard (non-adversarial) training: the paper's "plain" column."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_mwat.methods.base import AdversarialTrainingModel


@keras.saving.register_keras_serializable(package="keras_mwat")
class StandardModel(AdversarialTrainingModel):
    """Standard training: ``mean_i CE(f(x_i), y_i)`` on the clean inputs, uniform weights.

    The paper's "plain" baseline of Table 1: the same classifier, optimizer, data order and
    step as every other method, with no attack in training. The ``attack`` is still the
    model's evaluation attack: ``evaluate`` (and ``val_robust_accuracy`` in ``fit``) report
    robust accuracy under it, so the plain model is measured exactly as the adversarially
    trained ones. In the *training* logs ``robust_accuracy`` is the accuracy on the inputs
    trained on, which here are the clean ones: it equals ``accuracy``; ``val_loss`` is its
    training loss too, the clean cross-entropy.

    Example:
    ```python
    model = keras_mwat.StandardModel(keras_mwat.zoo.tiny_cnn(),
                                     attack=keras_mwat.attacks.PGD(eps=0.1, step_size=0.025))
    model.compile(optimizer="adam")
    model.fit(x_train, y_train, epochs=1)
    model.evaluate(x_test, y_test, return_dict=True)  # clean and PGD robust accuracy
    ```
    """

    preset = True

    def _attack(self, x, y, logits_clean, seed, model_fn=None):
        """No attack in training: the "adversarial" inputs are the clean ones."""
        return tf.stop_gradient(x), None

    def validation_losses(self, x, y, logits_clean, x_adv, logits_adv):
        """The method's own loss on validation data: the clean cross-entropy."""
        return self.base_loss(y, logits_clean)
