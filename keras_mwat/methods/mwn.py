"""Meta-Weight-Net (Shu et al., 2019) on adversarial training.

The same bilevel machinery as MWAT, but the weight network maps each sample's (detached)
per-sample training loss, not its margin, to a weight; the meta objective defaults to the
clean cross-entropy, as in the reference (which uses a held-out clean meta set: pass
``meta_source="dataset", meta_data=(x, y)`` for that).
"""

from __future__ import annotations

import keras

from keras_mwat.methods.mwat import MWATModel


@keras.saving.register_keras_serializable(package="keras_mwat")
class MWNModel(MWATModel):
    """Meta-Weight-Net: learned weights of the per-sample loss, by the look-ahead step.

    Takes the arguments of ``MWATModel`` (``margin`` is unused); ``meta_objective``
    defaults to "clean".

    Example:
    ```python
    data = keras_mwat.data.load_embedded()
    model = keras_mwat.MWNModel(keras_mwat.zoo.small_cnn(), meta_source="dataset",
                                meta_data=data.validation)
    model.compile(optimizer="adam")
    model.fit(data.train_dataset(), epochs=1)
    ```
    """

    def __init__(self, classifier, meta_objective: str = "clean", **kwargs):
        super().__init__(classifier, meta_objective=meta_objective, **kwargs)

    def feature_dim(self) -> int:
        return 1

    def weight_features(self, step):
        return step.weighted_loss[:, None]
