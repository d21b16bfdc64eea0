"""MWAT: margin-weighted adversarial training with a learned weight network.

Holtz, Weng & Mishne, "Learning Sample Reweighting for Accuracy and Adversarial Robustness"
(2022). Each sample's loss on its PGD example is weighted by ``ω_φ(m_i)``, a small network
of the sample's class-conditioned multi-class margin; φ is learned by a bilevel (look-ahead)
step: virtual step of the classifier under the current weights, meta loss of the virtual
classifier, step of φ, then the real step with the updated weights. The exact choices
(features, meta batch, meta objective, normalisation) are this library's reconstruction and
are all options; see docs/method.md.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from keras_mwat import losses, margins, validation, weighting
from keras_mwat.methods import bilevel, objectives, replicas
from keras_mwat.methods.base import AdversarialTrainingModel, TrainingStep
from keras_mwat.weight_net import WeightNetwork

META_SOURCES = ("batch", "split", "dataset")
META_OBJECTIVES = ("adversarial", "clean", "both")
MARGIN_SOURCES = ("adversarial", "clean")


@keras.saving.register_keras_serializable(package="keras_mwat")
class MWATModel(AdversarialTrainingModel):
    """Adversarial training with learned, margin-based sample weights (bilevel).

    Args:
        classifier: A built Keras model mapping inputs to logits.
        attack: The training attack (default L-inf PGD-10 at 8/255 in [0, 1]).
        weight_net: A ``WeightNetwork`` (default ``WeightNetwork(hidden_units=(100,))``).
        margin: Weight-net input: "multiclass" (``p_y - p_j`` for every class j, with
            ``one_hot(y)``), "scalar" (Definition 2.2), "sorted" or "logit".
        meta_source: Meta batch of the look-ahead step: "batch" (the training batch),
            "split" (a held-out ``meta_fraction`` of each batch; the rest drives the virtual
            step) or "dataset" (batches drawn from ``meta_data``).
        meta_objective: Meta loss of the virtual classifier: "adversarial" (the default),
            "clean" or "both" (sum of the two cross-entropies). "adversarial" and "both"
            reached the same clean and robust accuracy in the 3-seed ablation of
            docs/results.md; "adversarial" costs one look-ahead pass less.
        inner_lr: Step size of the virtual step; None uses the classifier optimizer's
            current learning rate.
        meta_optimizer: Optimizer of the weight network (default ``Adam(1e-3)``); wrapped
            in a ``LossScaleOptimizer`` under the ``mixed_float16`` policy.
        weight_normalization: "mean" (global mean 1), "sum" (global sum 1) or "none".
        reweight_start_epoch: Uniform weights (and no meta update) before this epoch.
        meta_update_every: Update the weight network every k-th step (learned weights are
            used on every step; the other steps skip the look-ahead entirely).
        seed: Seed of the in-graph randomness.
        meta_data: With ``meta_source="dataset"``: an ``(x, y)`` tuple of arrays or a
            ``tf.data.Dataset`` of ``(x, y)`` batches. Under tf.distribute a dataset's
            batches are global batches, split over the replicas like the training data; a
            dataset cannot be used with ``jit_compile=True`` (arrays can).
        meta_batch_size: Meta batch size drawn from an ``(x, y)`` tuple ``meta_data``
            (the global meta batch: replicas share the draw and each takes a slice).
        meta_fraction: Held-out fraction of each batch with ``meta_source="split"`` (the
            last samples of the global batch).
        margin_source: Margins from the "adversarial" (default) or "clean" logits.
        base: "at" (weights on the CE of x_adv) or "trades" (weights on TRADES's KL term).
        beta: TRADES's KL weight (``base="trades"`` only).
        hypergradient_mode: How the hypergradient's per-sample products
            ``<∇_θ' L_meta, ∇_θ l_i>`` are evaluated, all to the same value: "low_memory"
            (the default: a plain inner backward pass, then the double backward of the
            recorded losses once the look-ahead pass is done, so that the inner backward's
            intermediates and the look-ahead's activations are never alive at once),
            "reverse" (the backward pass through the recorded inner gradient: as fast,
            more peak memory) or "forward" (forward mode over a recomputed forward pass;
            slower on CPU, a cross-check). Measured in docs/benchmarks.md.
        **kwargs: Passed to ``keras.Model``.

    Example:
    ```python
    import keras, keras_mwat as km
    data = km.data.load_embedded()
    model = km.MWATModel(
        km.zoo.small_cnn(input_shape=(28, 28, 1), num_classes=10),
        attack=km.attacks.PGD(eps=0.3, step_size=0.075, num_steps=10), seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    model.fit(data.train_dataset(), validation_data=data.validation_dataset(), epochs=2)
    ```
    """

    def __init__(
        self,
        classifier: keras.Model,
        attack=None,
        weight_net: WeightNetwork | None = None,
        margin: str = "multiclass",
        meta_source: str = "batch",
        meta_objective: str = "adversarial",
        inner_lr: float | None = None,
        meta_optimizer=None,
        weight_normalization: str = "mean",
        reweight_start_epoch: int = 0,
        meta_update_every: int = 1,
        seed: int | None = None,
        meta_data=None,
        meta_batch_size: int = 128,
        meta_fraction: float = 0.5,
        margin_source: str = "adversarial",
        base: str = "at",
        beta: float = 6.0,
        hypergradient_mode: str = "low_memory",
        **kwargs,
    ):
        super().__init__(classifier, attack=attack, reweight_start_epoch=reweight_start_epoch,
                         seed=seed, **kwargs)
        self.base = validation.check_choice(base, "base", objectives.BASES)
        self.beta = validation.check_nonnegative(beta, "beta")
        self.hypergradient_mode = validation.check_choice(
            hypergradient_mode, "hypergradient_mode", bilevel.HYPERGRADIENT_MODES)
        self.objective = objectives.from_base(base, beta)
        self.margin = validation.check_choice(margin, "margin", margins.MARGIN_KINDS)
        self.meta_source = validation.check_choice(meta_source, "meta_source", META_SOURCES)
        self.meta_objective = validation.check_choice(
            meta_objective, "meta_objective", META_OBJECTIVES
        )
        self.margin_source = validation.check_choice(
            margin_source, "margin_source", MARGIN_SOURCES
        )
        self.inner_lr = None if inner_lr is None else validation.check_positive(
            inner_lr, "inner_lr")
        self.weight_normalization = validation.check_choice(
            weight_normalization, "weight_normalization", weighting.NORMALIZATIONS
        )
        self.meta_update_every = validation.check_int(meta_update_every, "meta_update_every")
        self.meta_batch_size = validation.check_int(meta_batch_size, "meta_batch_size")
        self.meta_fraction = validation.check_positive(meta_fraction, "meta_fraction")
        if self.meta_fraction >= 1.0:
            raise ValueError(f"`meta_fraction` must be in (0, 1), got {meta_fraction!r}.")

        if weight_net is None:
            weight_net = WeightNetwork(name="weight_net")
        elif isinstance(weight_net, dict):
            weight_net = keras.saving.deserialize_keras_object(weight_net)
        if not isinstance(weight_net, keras.Model):
            raise TypeError(
                f"`weight_net` must be a keras_mwat.WeightNetwork (or a keras.Model), got "
                f"{type(weight_net).__name__}."
            )
        feature_dim = self.feature_dim()
        if not weight_net.built:
            weight_net.build((None, feature_dim))
        self.weight_net = weight_net
        try:
            self.weight_net(tf.zeros((2, feature_dim)))
        except Exception as error:  # noqa: BLE001 - re-raised with context
            raise ValueError(
                f"`weight_net` does not accept {feature_dim} margin features "
                f"({type(self).__name__}, {self.num_classes} classes): {error}"
            ) from error

        if meta_optimizer is None:
            meta_optimizer = keras.optimizers.Adam(1e-3)
        else:
            meta_optimizer = keras.optimizers.get(meta_optimizer)
        # Under mixed precision the hypergradient flows through float16 computations: scale
        # the meta loss as Keras scales the classifier's (``compile`` wraps that optimizer).
        self._scaled_meta_optimizer = (
            self.dtype_policy.name == "mixed_float16"
            and not isinstance(meta_optimizer, keras.optimizers.LossScaleOptimizer))
        if self._scaled_meta_optimizer:
            meta_optimizer = keras.optimizers.LossScaleOptimizer(meta_optimizer)
        self.meta_optimizer = meta_optimizer
        self.meta_optimizer.build(self.weight_net.trainable_variables)
        self.meta_loss_tracker = keras.metrics.Mean(name="meta_loss")

        self._meta_arrays = None
        self._meta_dataset = None
        self._meta_iterator = None
        self._distributed_meta_iterator = None
        if self.meta_source == "dataset":
            self._set_meta_data(meta_data)
        elif meta_data is not None:
            raise ValueError(
                f"`meta_data` is only used with meta_source='dataset', got "
                f"meta_source={self.meta_source!r}."
            )
        self.finish_init()

    # ----------------------------------------------------------------- set-up
    def _set_meta_data(self, meta_data) -> None:
        if meta_data is None:
            raise ValueError("meta_source='dataset' needs `meta_data=(x, y)` or a tf.data.Dataset.")
        if isinstance(meta_data, tf.data.Dataset):
            self._validate_data(meta_data, None)
            self._meta_dataset = meta_data
            self._meta_iterator = iter(meta_data.repeat())
            return
        if not isinstance(meta_data, tuple | list) or len(meta_data) != 2:
            raise TypeError(
                "`meta_data` must be an (x, y) tuple or a tf.data.Dataset of (x, y) batches, "
                f"got {type(meta_data).__name__}."
            )
        x_meta, y_meta = meta_data
        self._validate_arrays(x_meta, y_meta, self.attack.value_range, "meta_data x")
        labels = validation.check_labels(np.asarray(y_meta), self.num_classes, name="meta_data y")
        self._meta_arrays = (tf.constant(np.asarray(x_meta, dtype="float32")),
                             tf.constant(labels.astype("int32")))

    def xla_obstacle(self) -> str | None:
        if self._meta_dataset is not None:
            return ("with a tf.data.Dataset `meta_data` (its iterator cannot be compiled; pass "
                    "an (x, y) tuple of arrays instead)")
        return super().xla_obstacle()

    def feature_dim(self) -> int:
        """Number of inputs of the weight network."""
        return margins.feature_dim(self.margin, self.num_classes)

    def weight_features(self, step: TrainingStep):
        """The weight network's inputs, held constant: the margin features."""
        return margins.margin_features(self.margin, step.y, self.margin_logits(step))

    def method_metrics(self) -> list:
        return [self.meta_loss_tracker]

    def weight_normalization_mode(self) -> str:
        return self.weight_normalization

    # ---------------------------------------------------------------- weights
    def margin_logits(self, step: TrainingStep):
        logits = step.logits_adv if self.margin_source == "adversarial" else step.logits_clean
        return tf.stop_gradient(logits)

    def sample_weights(self, step: TrainingStep):
        features = tf.stop_gradient(self.weight_features(step))
        iteration = tf.cast(self.optimizer.iterations, tf.int64)
        update = tf.logical_and(step.reweighting,
                                tf.equal(iteration % self.meta_update_every, 0))
        fetch = self._next_meta_batch if self._meta_dataset is not None else None
        # The update all-reduces (weight sums, inner gradient, hypergradient) and applies an
        # optimizer: under tf.distribute that needs the cross-replica branch.
        replicas.synchronized_cond(update, self.meta_update, args=(step, features),
                                   fetch=fetch)
        return self.weight_net(features)

    def meta_update(self, step: TrainingStep, features, *meta_batch) -> None:
        """One step of the weight network on the look-ahead meta loss; logs the meta loss.

        Args:
            step: The training step (its tape recorded the per-sample losses).
            features: The weight network's inputs for the batch.
            *meta_batch: ``(x_meta, y_meta)`` drawn from a ``meta_data`` dataset, if any.
        """
        meta_loss, hypergradients = self.hypergradient(step, features, meta_batch or None)
        self.meta_optimizer.apply(hypergradients, self.weight_net.trainable_variables)
        self.meta_loss_tracker.update_state(meta_loss * replicas.replica_count())

    def _next_meta_batch(self) -> tuple:
        """The next ``meta_data`` batch; per-replica shards in cross-replica context."""
        if not tf.distribute.in_cross_replica_context():
            return tuple(next(self._meta_iterator))[:2]
        if self._distributed_meta_iterator is None:
            strategy = tf.distribute.get_strategy()
            with tf.init_scope():  # created once, eagerly, outside the traced step
                self._distributed_meta_iterator = iter(
                    strategy.experimental_distribute_dataset(self._meta_dataset.repeat()))
        return tuple(next(self._distributed_meta_iterator))[:2]

    def current_weights(self, step: TrainingStep):
        return self.weight_net(tf.stop_gradient(self.weight_features(step)))

    def virtual_learning_rate(self):
        if self.inner_lr is not None:
            return tf.constant(self.inner_lr, tf.float32)
        return tf.cast(self.optimizer.learning_rate, tf.float32)

    def _split_mask(self, n):
        """1 for the samples that drive the virtual step, 0 for the held-out meta part.

        The held-out part is the last ``floor(meta_fraction * N)`` samples of the *global*
        batch of N (at least one, and at least one is left to train on), so that replicas
        hold out exactly the samples one device would.
        """
        offset, total = replicas.global_offset(n)
        held = tf.cast(tf.math.floor(tf.cast(total, tf.float32) * self.meta_fraction),
                       tf.int32)
        held = tf.clip_by_value(held, 1, total - 1)
        return tf.cast(offset + tf.range(n) < total - held, tf.float32)

    def hypergradient(self, step: TrainingStep, features, meta_batch=None):
        """The meta loss of the look-ahead classifier and its gradient w.r.t. the weight net.

        Args:
            step: The training step (its tape recorded the per-sample losses).
            features: The weight network's inputs for the batch.
            meta_batch: ``(x_meta, y_meta)`` from a ``meta_data`` dataset, or None.

        Returns:
            ``(meta_loss, hypergradients)``: the replica-local meta loss (summed over
            replicas, the global one) and the gradients of the meta optimizer's scaled meta
            loss, ready for ``meta_optimizer.apply``.
        """
        n = tf.shape(step.y)[0]
        mask = self._split_mask(n) if self.meta_source == "split" else None
        mode = self.weight_normalization

        def loss_targets():
            raw = self.weight_net(features)
            coefficients = weighting.loss_coefficients(raw, mode, mask)
            targets, output_gradients = self.loss_targets(step, coefficients)
            if mask is not None and len(targets) > 1:
                # The unweighted part (e.g. TRADES's clean CE) also covers the train part only.
                count = weighting.global_sum(tf.reduce_sum(mask))
                output_gradients[1] = mask / count
            return targets, output_gradients

        x_meta, y_meta, x_meta_adv = self.meta_batch(step, mask, meta_batch)

        size = weighting.global_batch_size(y_meta)

        def meta_term(inputs):
            def term(theta_prime):
                logits, _ = self.forward(theta_prime, step.non_trainable, inputs)
                return tf.reduce_sum(losses.cross_entropy(y_meta, logits)) / size
            return term

        # The meta loss as a sum of terms: bilevel differentiates them one after the other.
        meta_terms = []
        if self.meta_objective in ("adversarial", "both"):
            meta_terms.append(meta_term(x_meta_adv))
        if self.meta_objective in ("clean", "both"):
            meta_terms.append(meta_term(x_meta))

        losses_at = None
        if self.hypergradient_mode == "forward":
            def losses_at(theta):
                """The loss targets recomputed at ``theta`` (same forward passes)."""
                replay = dataclasses.replace(step)
                replay.logits_adv, _ = self.forward(theta, step.non_trainable, step.x_adv)
                if self.needs_natural_logits:
                    replay.logits_natural, _ = self.forward(theta, step.non_trainable, step.x)
                replay.weighted_loss, replay.unweighted_loss = self.sample_losses(replay)
                return self.loss_targets(replay, tf.zeros_like(replay.weighted_loss))[0]

        return bilevel.virtual_step(
            step.tape, step.theta, loss_targets, self.virtual_learning_rate(), meta_terms,
            self.weight_net.trainable_variables,
            inner_loss_scale=self.optimizer.scale_loss(tf.constant(1.0)),
            scale_meta_loss=self.meta_optimizer.scale_loss, mode=self.hypergradient_mode,
            losses_at=losses_at)

    def meta_batch(self, step: TrainingStep, mask, meta_batch=None):
        """(x_meta, y_meta, x_meta_adv) for the meta loss (x_meta_adv None if unused).

        Under tf.distribute each replica returns its share of the global meta batch: its
        own held-out samples ("split"), its slice of the ``meta_batch_size`` indices drawn
        from ``meta_data`` arrays (the same draw on every replica), or its shard of the
        dataset's batch.
        """
        needs_adversarial = self.meta_objective in ("adversarial", "both")
        if self.meta_source == "batch":
            return step.x, step.y, step.x_adv
        if self.meta_source == "split":
            start = tf.cast(tf.reduce_sum(mask), tf.int32)
            return step.x[start:], step.y[start:], step.x_adv[start:]
        if self._meta_arrays is not None:
            x_all, y_all = self._meta_arrays
            index = keras.random.randint(
                (self.meta_batch_size,), 0, tf.shape(y_all)[0], seed=self.train_seed
            )
            first, last = replicas.replica_slice(self.meta_batch_size)
            index = index[first:last]
            x_meta, y_meta = tf.gather(x_all, index), tf.gather(y_all, index)
        else:
            if meta_batch is None:
                meta_batch = self._next_meta_batch()
            x_meta, y_meta = meta_batch[0], meta_batch[1]
            y_meta = tf.cast(tf.reshape(y_meta, [-1]), tf.int32)
            x_meta = tf.cast(x_meta, step.x.dtype)
        x_meta_adv = None
        if needs_adversarial:
            x_meta_adv = tf.stop_gradient(self.attack.perturb(
                self.classifier_fn(training=False), x_meta, y_meta,
                seed=self.attack_seed()))
        return x_meta, y_meta, x_meta_adv

    # ---------------------------------------------------------- serialisation
    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            weight_net=keras.saving.serialize_keras_object(self.weight_net),
            margin=self.margin,
            meta_source=self.meta_source,
            meta_objective=self.meta_objective,
            inner_lr=self.inner_lr,
            meta_optimizer=keras.optimizers.serialize(
                self.meta_optimizer.inner_optimizer if self._scaled_meta_optimizer
                else self.meta_optimizer),
            weight_normalization=self.weight_normalization,
            meta_update_every=self.meta_update_every,
            meta_batch_size=self.meta_batch_size,
            meta_fraction=self.meta_fraction,
            margin_source=self.margin_source,
            base=self.base,
            beta=self.beta,
            hypergradient_mode=self.hypergradient_mode,
        )
        if self.meta_source == "dataset":
            # Meta data is not part of the config: a loaded model falls back to the batch.
            config["meta_source"] = "batch"
        return config
