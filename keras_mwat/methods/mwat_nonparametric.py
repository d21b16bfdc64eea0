"""The paper's non-parametric reweighting: weights from gradient alignment with the meta set.

Holtz, Weng & Mishne (2022) compare BiLAW with a variant that learns no weight network: each
sample's weight is proportional to how well its training gradient (at θ) aligns with the
gradient of the meta loss at the pseudo model θ̃, as in learning-to-reweight (Ren et al.,
"Learning to Reweight Examples for Robust Deep Learning", ICML 2018).
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from keras_mwat import weighting, weightings
from keras_mwat.methods import bilevel, replicas
from keras_mwat.methods.base import TrainingStep
from keras_mwat.methods.mwat import MWATModel


class AlignmentWeighting(weightings.ModelBoundWeighting):
    """The non-parametric weighting: clipped gradient alignment with the meta loss.

    ``update`` computes the step's weights and logs the meta loss (the weights are a
    by-product of that computation, kept in ``step.precomputed_weights``); ``weights``
    returns them, or, for a step that did not take the update (inspection), computes them
    afresh without logging. Bound to ``MWATNonParametricModel``, which creates it.

    Args:
        normalization: "sum" (default), "mean" or "none".

    Example:
    ```python
    model = km.MWATNonParametricModel(km.zoo.tiny_cnn(), meta_source="batch")
    model.weighting  # AlignmentWeighting(normalization="sum")
    ```
    """

    @classmethod
    def owner(cls) -> type:
        return MWATNonParametricModel

    def update(self, step) -> None:
        meta_loss, step.precomputed_weights = step.model.alignment_weights(step)
        step.model.meta_loss_tracker.update_state(meta_loss * replicas.replica_count())

    def weights(self, step):
        if step.precomputed_weights is not None:
            return step.precomputed_weights
        return step.model.alignment_weights_now(step)


@keras.saving.register_keras_serializable(package="keras_mwat")
class MWATNonParametricModel(MWATModel):
    """Non-parametric reweighting: ``w_i ∝ max(0, <∇_θ l_i(θ), ∇_θ̃ L_meta(θ̃)>)``.

    Every step: a pseudo step ``θ̃ = θ − β ∇_θ mean_i l_i(θ)`` with uniform weights [GAP:
    the paper does not say which weights the pseudo step uses; learning-to-reweight's
    perturbation at zero gives θ̃ = θ, the paper's text asks for a pseudo step, ours
    takes it with uniform weights]; the meta loss at θ̃ (the unweighted adversarial CE of
    a held-out meta batch, as BiLAW's); each sample's weight is the inner product of its
    loss gradient at θ with the meta gradient, clipped at zero and normalised to sum 1
    over the global batch [REF: learning-to-reweight; the paper leaves both open]. When
    no sample aligns (all products ≤ 0) the weights are all zero and the step leaves the
    classifier unchanged, as in learning-to-reweight. With ``base="trades"`` the weights
    multiply the KL term and the alignment is that of the KL term's gradient.

    Takes ``MWATModel``'s arguments except ``weight_net``, ``meta_optimizer``, ``margin``,
    ``margin_source`` and ``meta_update_every`` (the weights are recomputed every step).
    A ``tf.data`` ``meta_data`` works on one device; under tf.distribute pass arrays.

    Example:
    ```python
    data = keras_mwat.data.load_embedded()
    train, meta = keras_mwat.data.holdout_split(data.train, sizes=(500,), seed=0)
    model = keras_mwat.MWATNonParametricModel(keras_mwat.zoo.tiny_cnn(), meta_data=meta,
        attack=keras_mwat.attacks.PGD(eps=0.1, step_size=0.025))
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    model.fit(*train, epochs=1)
    ```
    """

    learns_weight_net = False

    def make_weighting(self, weight_normalization: str) -> weightings.Weighting:
        return AlignmentWeighting(weight_normalization)

    def alignment_weights(self, step: TrainingStep):
        """(meta loss at θ̃, clipped alignments) for a step whose tape recorded the losses."""
        meta_batch = None
        if self._meta_dataset is not None:
            if tf.distribute.has_strategy() and replicas.num_replicas() > 1:
                raise ValueError(
                    f"{type(self).__name__} under tf.distribute needs `meta_data` as an "
                    "(x, y) tuple of arrays, not a tf.data.Dataset.")
            meta_batch = tuple(next(self._meta_iterator))[:2]
        uniform = weighting.loss_coefficients(tf.ones_like(step.weighted_loss), "sum")
        targets, coefficients = self.loss_targets(step, uniform)
        meta_loss, products = bilevel.gradient_alignment(
            step.tape, step.theta, targets, coefficients, self.virtual_learning_rate(),
            self.meta_loss_terms(step, None, meta_batch),
            inner_loss_scale=self.optimizer.scale_loss(tf.constant(1.0)))
        return meta_loss, tf.nn.relu(tf.cast(products[0], tf.float32))

    def alignment_weights_now(self, step: TrainingStep):
        """The weights of a step without a recorded tape (inspection): records one."""
        theta = [tf.convert_to_tensor(v) for v in self.classifier.trainable_variables]
        non_trainable = [tf.convert_to_tensor(v)
                         for v in self.classifier.non_trainable_variables]
        replay = dataclasses.replace(step, theta=theta, non_trainable=non_trainable)
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
            tape.watch(theta)
            replay.logits_adv, _ = self.forward(theta, non_trainable, step.x_adv)
            if self.needs_natural_logits:
                replay.logits_natural, _ = self.forward(theta, non_trainable, step.x)
            replay.weighted_loss, replay.unweighted_loss = self.sample_losses(replay)
        replay.tape = tape
        return self.alignment_weights(replay)[1]
