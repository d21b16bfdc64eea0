"""Meta-Weight-Net (Shu et al., 2019) on adversarial training.

The same bilevel machinery as MWAT, but the weight network maps each sample's (detached)
per-sample training loss, not its margin, to a weight; the meta objective defaults to the
clean cross-entropy of a held-out meta set (``meta_data``), a ``Dense(100) → sigmoid`` weight
network and ``Adam(1e-3)`` on it, as in the reference.
"""

from __future__ import annotations

import keras

from keras_mwat.methods.mwat import MWATModel


@keras.saving.register_keras_serializable(package="keras_mwat")
class MWNModel(MWATModel):
    """Meta-Weight-Net: learned weights of the per-sample loss, by the look-ahead step.

    Takes the arguments of ``MWATModel`` (``margin`` is unused); the meta set defaults to
    ``km.MetaSet(objective="clean")`` (a ``meta_set`` you pass replaces it whole), the weight network to 100 hidden units and its optimizer to
    ``Adam(1e-3)`` (the reference's).

    Example:
    ```python
    data = keras_mwat.data.load_embedded()
    model = keras_mwat.MWNModel(keras_mwat.zoo.small_cnn(), meta_data=data.validation)
    model.compile(optimizer="adam")
    model.fit(data.train_dataset(), epochs=1)
    ```
    """

    #: The reference's meta loss: the clean cross-entropy of the meta batch.
    option_defaults = {"meta_set": {"objective": "clean"}}

    default_hidden_units = (100,)

    def default_meta_optimizer(self):
        """Adam(1e-3) on the weight network, as in the Meta-Weight-Net reference."""
        return keras.optimizers.Adam(1e-3)

    def feature_dim(self) -> int:
        return 1

    def weight_features(self, step):
        return step.weighted_loss[:, None]
