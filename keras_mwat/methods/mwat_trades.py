"""BiLAW-TRADES: the paper's TRADES variant of MWAT, as a named preset."""

from __future__ import annotations

import keras

from keras_mwat.methods.mwat import MWATModel


@keras.saving.register_keras_serializable(package="keras_mwat")
class MWATTRADESModel(MWATModel):
    """The paper's **BiLAW-TRADES**: ``CE(f(x), y) + beta · w_i · KL(f(x) ‖ f(x_adv))``.

    ``MWATModel(base="trades")`` under its own name: the learned weights multiply TRADES's
    KL term only, the clean cross-entropy stays unweighted, and the training attack (also
    the meta batch's) maximises TRADES's KL from ``x + 0.001 N(0, 1)`` [GAP: the paper does
    not name the attack objective; TRADES's own is the natural reading]. The meta loss is
    BiLAW's (the unweighted adversarial CE of the held-out meta batch). ``beta`` is the
    paper's 1/λ = 6. Takes ``MWATModel``'s other arguments.

    Example:
    ```python
    data = keras_mwat.data.load_embedded().with_holdout(meta=500, early_stopping=0)
    model = keras_mwat.MWATTRADESModel(keras_mwat.zoo.tiny_cnn(), meta_data=data.meta,
        attack=keras_mwat.attacks.PGD(eps=0.1, step_size=0.025))
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    model.fit(*data.train, epochs=1)
    ```
    """

    default_base = "trades"

    def __init__(self, classifier, base: str = "trades", **kwargs):
        if base != "trades":
            raise ValueError(f"MWATTRADESModel is BiLAW-TRADES: `base` must be 'trades', got "
                             f"base={base!r} (use MWATModel for base='at').")
        if kwargs.get("objective") is not None:
            raise ValueError("MWATTRADESModel is BiLAW-TRADES: it takes no `objective` (use "
                             "MWATModel(objective=...) for another one).")
        super().__init__(classifier, base=base, **kwargs)
