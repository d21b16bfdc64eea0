"""MWAT, the paper's BiLAW: adversarial training with a learned, margin-based weight network.

Holtz, Weng & Mishne, "Learning Sample Reweighting for Accuracy and Adversarial Robustness"
(2022), who call the method **BiLAW** (Bilevel Learnable Adversarial reWeighting). Each
sample's loss on its PGD example is weighted by ``ω_µ(Δ_i)``, a small network of the sample's
multi-class margin Δ_i (Definition 3, on the clean input); µ is learned by bilevel
optimisation. One iteration (Algorithm 1):

1. pseudo step ``θ̃ = θ − β ∇_θ Σ_i w_i ℓ_i(θ)`` with the current weight network;
2. weight-network step ``µ ← µ − α ∇_µ L_val(θ̃(µ))``, ``L_val`` the unweighted adversarial
   cross-entropy of a batch of a held-out meta set, differentiated through the pseudo step;
3. real step of the classifier with the weights of the updated network.

The defaults are the paper's; where the paper is silent the docstring says **[GAP]** and
names our choice. The earlier reconstruction of this library (meta loss on the training
batch, margins of the adversarial logits with a one-hot, Adam on the weight net) stays
reachable through the options; see docs/method.md.
"""

from __future__ import annotations

import dataclasses
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_mwat import losses, margins, objectives, validation, weighting, weightings
from keras_mwat.methods import bilevel, replicas
from keras_mwat.methods.base import AdversarialTrainingModel, TrainingStep
from keras_mwat.methods.mwat_options import (  # noqa: F401 - re-exported names
    FLAT_OPTIONS,
    META_ATTACK_MODELS,
    META_OBJECTIVES,
    META_SOURCES,
    LookAhead,
    MetaSet,
    group_flat_options,
)
from keras_mwat.weight_net import WeightNetwork

MARGIN_SOURCES = ("clean", "adversarial")
#: Step size α of the weight network's plain gradient step. The paper does not give it
#: [GAP]; chosen by the sweep in docs/method.md ("Choosing α").
DEFAULT_META_LEARNING_RATE = 0.3


def missing_meta_set_message(name: str) -> str:
    """The error shown when a model that needs a held-out meta set has none."""
    return (
        f"{name} needs its held-out meta set: the paper trains the weight network on the "
        "unweighted robust loss of held-out training images (1,000 of them), which are not "
        "trained on. Split them off and pass them, e.g.\n"
        "    train, meta = km.data.holdout_split((x_train, y_train), sizes=(1000,), seed=0)\n"
        f"    model = km.{name}(classifier, meta_data=meta)   # and fit on `train`\n"
        "(or `model.set_meta_data(meta)` on an existing or loaded model), or pass "
        "meta_source='batch' for this library's earlier variant that takes the meta loss "
        "on the training batch itself."
    )


class LookAheadWeighting(weightings.ModelBoundWeighting):
    """The weighting of ``MWATModel`` and its variants: the weight network of the margin
    features, learned by the look-ahead (bilevel) step.

    ``update`` runs the model's ``meta_step`` (pseudo step, meta loss, weight-network
    step); ``weights`` is the weight network of the step's margin features, with no side
    effect. It works with the model that owns the weight network, the meta set and the
    hypergradient settings (an ``MWATModel``), which creates it; it is not a standalone
    weighting for ``AdversarialTrainingModel``.

    Args:
        normalization: "sum" (the paper's), "mean" or "none".

    Example:
    ```python
    model = km.MWATModel(km.zoo.tiny_cnn(), meta_source="batch")
    model.weighting  # LookAheadWeighting(normalization="sum")
    ```
    """

    @classmethod
    def owner(cls) -> type:
        return MWATModel

    def update(self, step) -> None:
        step.model.meta_step(step)

    def weights(self, step):
        model = step.model
        return model.weight_net(tf.stop_gradient(model.weight_features(step)))


@keras.saving.register_keras_serializable(package="keras_mwat")
class MWATModel(AdversarialTrainingModel):
    """The paper's BiLAW: adversarial training with learned, margin-based sample weights.

    With the defaults this is the method of Holtz, Weng & Mishne (2022) as published:
    margins ``p_y − p_j`` of the clean probabilities (K features), a weight network
    ``Dense(128, relu) → Dense(1, sigmoid)``, weights normalised to sum 1 over the batch,
    the unweighted adversarial cross-entropy of a batch of ``meta_batch_size`` (128) drawn
    from a held-out meta set as the meta loss, a plain gradient step on the weight network,
    the pseudo and the real step with the classifier optimizer's learning rate, one meta
    update per step. Compile it with the paper's optimizer (``km.recipes``: SGD, momentum
    0.9, lr 0.1 divided by 10 at epochs 30 and 60).

    Where the paper is silent, our choices [GAP]: the pseudo step is a plain SGD step
    (no momentum, no weight decay) with the optimizer's current learning rate; the meta
    batch is attacked against the pseudo model θ̃ (the literal reading of ``L_val(θ̃)``;
    ``LookAhead(meta_attack_model="current")`` attacks θ instead) with the training attack (same
    objective, same warm-up strength, same seed stream); meta batches are drawn without
    replacement from the meta set, independently each step; α = 0.3 (the sweep in
    docs/method.md); before ``reweight_start_epoch`` (default 0, none in the paper) the
    weights are uniform and the weight network is not updated.

    Args:
        classifier: A built Keras model mapping inputs to logits.
        attack: The training attack (default L-inf PGD-10 at 8/255 in [0, 1]).
        weight_net: A ``WeightNetwork`` (default ``WeightNetwork(hidden_units=(128,))``).
        margin: Weight-net input: "multiclass" (the paper's K-vector ``p_y − p_j``),
            "multiclass_onehot" (with ``one_hot(y)``; ours), "scalar" (Definition 2.2),
            "sorted" or "logit" (ours).
        meta_set: ``km.MetaSet``: where the meta batches come from (the paper's: 128 a
            step from the held-out ``meta_data``; ours: "batch", "split") and the meta
            loss (the paper's: the unweighted adversarial CE; ours: "clean", "both").
        look_ahead: ``km.LookAhead``: the pseudo step's size β (None, the paper's: the
            classifier optimizer's current learning rate), how often the weight network
            is updated, how the hypergradient is computed, which classifier the meta
            batch is attacked against.
        weight_normalization: "sum" (the paper's: weights sum to 1 over the global batch),
            "mean" (mean 1: the same loss, another logged scale) or "none" (ours).
        reweight_start_epoch: Uniform weights (and no meta update) before this epoch.
        seed: Seed of the in-graph randomness.
        meta_data: The held-out meta set, with ``meta_source="dataset"``: an ``(x, y)``
            tuple of arrays (meta batches are drawn from it) or a ``tf.data.Dataset`` of
            ``(x, y)`` batches (used as it comes). ``km.data.holdout_split`` splits it off
            a training set. Not saved with the model: a loaded model refuses to train until
            ``set_meta_data`` attaches it again. Under tf.distribute a dataset's batches are
            global batches; a dataset cannot be used with ``jit_compile=True``.
        margin_source: Margins from the "clean" logits (the paper's) or the "adversarial"
            ones (ours, the earlier default).
        base: "at" (BiLAW: weights on the CE of x_adv) or "trades" (the paper's
            **BiLAW-TRADES**: ``CE(f(x), y) + beta · w_i · KL(f(x) ‖ f(x_adv))``, weights on
            the KL term only, TRADES's own attack).
        beta: TRADES's KL weight (``base="trades"`` only; the paper's 1/λ = 6).
        objective: Any ``km.objectives.Objective`` instead of ``base`` (ours: the learned
            weights multiply its weighted terms, e.g. ``MARTObjective()``); the meta loss
            stays the meta set's.
        **kwargs: Passed to ``keras.Model`` (and, for one release, the flat option names of
            earlier releases: ``km.methods.mwat_options.FLAT_OPTIONS``).

    The weight network's optimizer is given to ``compile(meta_optimizer=...)`` (default:
    the paper's plain gradient step, ``SGD(0.3)``, α chosen by us; wrapped in a
    ``LossScaleOptimizer`` under the ``mixed_float16`` policy).

    Example:
    ```python
    import keras, keras_mwat as km
    data = km.data.load_embedded()
    train, meta = km.data.holdout_split(data.train, sizes=(500,), seed=0)
    model = km.MWATModel(km.zoo.tiny_cnn(), meta_data=meta, seed=0,
                         attack=km.attacks.PGD(eps=0.1, step_size=0.025, num_steps=10))
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    model.fit(*train, batch_size=128, epochs=2)
    ```
    """

    preset = True
    #: Whether the method learns a weight network (the non-parametric variant does not).
    learns_weight_net = True
    #: Hidden units of the default weight network (the paper's 128).
    default_hidden_units = (128,)
    #: Defaults of the option groups that differ from ``MetaSet()`` / ``LookAhead()``.
    option_defaults: dict = {}
    #: The ``base`` the class uses when none is given.
    default_base = "at"

    def __init__(
        self,
        classifier: keras.Model,
        attack=None,
        weight_net: WeightNetwork | None = None,
        margin: str = "multiclass",
        meta_set: MetaSet | None = None,
        look_ahead: LookAhead | None = None,
        weight_normalization: str = "sum",
        reweight_start_epoch: int = 0,
        seed: int | None = None,
        meta_data=None,
        margin_source: str = "clean",
        base: str = "at",
        beta: float = 6.0,
        objective: objectives.Objective | dict | None = None,
        **kwargs,
    ):
        flat = {key: kwargs.pop(key) for key in list(kwargs) if key in FLAT_OPTIONS}
        meta_optimizer = kwargs.pop("meta_optimizer", None)
        if meta_optimizer is not None and kwargs.pop("_meta_optimizer_from_config", False):
            pass  # a model saved by an earlier release: no warning on loading it
        elif meta_optimizer is not None:
            warnings.warn(
                f"{type(self).__name__}(meta_optimizer=...) is deprecated and will be removed "
                "in the next release: pass it to compile(meta_optimizer=...).",
                DeprecationWarning, stacklevel=2)
        kwargs.pop("_meta_optimizer_from_config", None)
        grouped = group_flat_options(
            {"meta_set": meta_set, "look_ahead": look_ahead, **flat},
            defaults=self.option_defaults, warn=not kwargs.pop("_flat_from_config", False),
            owner=type(self).__name__)
        base = validation.check_choice(base, "base", objectives.BASES)
        custom_objective = objective is not None
        if custom_objective:
            objective = objectives.get(objective)
            if base != self.default_base:
                raise ValueError(f"pass either `objective` or `base`, not both: got "
                                 f"base={base!r} and objective={objective!r}.")
        else:
            objective = objectives.from_base(base, beta)
        super().__init__(classifier, attack=attack, objective=objective,
                         weighting=self.make_weighting(weight_normalization),
                         reweight_start_epoch=reweight_start_epoch, seed=seed, **kwargs)
        self.base = base
        self.beta = validation.check_nonnegative(beta, "beta")
        self._custom_objective = custom_objective
        self.margin = validation.check_choice(margin, "margin", margins.MARGIN_KINDS)
        self.margin_source = validation.check_choice(
            margin_source, "margin_source", MARGIN_SOURCES
        )
        self.weight_normalization = validation.check_choice(
            weight_normalization, "weight_normalization", weighting.NORMALIZATIONS
        )
        #: The meta set's options (``km.MetaSet``) and the look-ahead step's
        #: (``km.LookAhead``); the flat attributes below are read from them.
        self.meta_set = grouped["meta_set"]
        self.look_ahead = grouped["look_ahead"]
        self.meta_source = self.meta_set.source
        self.meta_objective = self.meta_set.objective
        self.meta_batch_size = self.meta_set.batch_size
        self.meta_fraction = self.meta_set.fraction
        self.inner_lr = self.look_ahead.step_size
        self.meta_update_every = self.look_ahead.update_every
        self.hypergradient_mode = self.look_ahead.hypergradient_mode
        self.meta_attack_model = self.look_ahead.meta_attack_model

        if self.learns_weight_net:
            self._build_weight_net(weight_net, meta_optimizer)
        elif weight_net is not None or meta_optimizer is not None:
            raise ValueError(
                f"{type(self).__name__} learns no weight network: `weight_net` and "
                "`meta_optimizer` must be None.")
        self.meta_loss_tracker = keras.metrics.Mean(name="meta_loss")

        self._meta_arrays = None
        self._meta_dataset = None
        self._meta_iterator = None
        self._distributed_meta_iterator = None
        if meta_data is not None:
            if self.meta_source != "dataset":
                raise ValueError(
                    f"`meta_data` is only used with meta_source='dataset', got "
                    f"meta_source={self.meta_source!r}."
                )
            self.set_meta_data(meta_data)

    def _build_weight_net(self, weight_net, meta_optimizer) -> None:
        if weight_net is None:
            weight_net = WeightNetwork(hidden_units=self.default_hidden_units,
                                       name="weight_net")
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

        self._set_meta_optimizer(meta_optimizer)

    def _set_meta_optimizer(self, meta_optimizer) -> None:
        """The weight network's optimizer (None: ``default_meta_optimizer``)."""
        if meta_optimizer is None:
            meta_optimizer = self.default_meta_optimizer()
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

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, meta_optimizer=None,
                **kwargs):
        """``AdversarialTrainingModel.compile``, plus the weight network's optimizer.

        Args:
            optimizer: The classifier's optimizer (its learning rate is also the pseudo
                step's β unless ``LookAhead(step_size=...)`` is given).
            loss: See ``AdversarialTrainingModel.compile``.
            metrics: See ``AdversarialTrainingModel.compile``.
            meta_optimizer: The weight network's optimizer; None keeps the current one
                (the method's default: the paper's plain step ``SGD(0.3)``; MWN's
                ``Adam(1e-3)``).
            **kwargs: See ``AdversarialTrainingModel.compile``.
        """
        if meta_optimizer is not None:
            if not self.learns_weight_net:
                raise ValueError(f"{type(self).__name__} learns no weight network: "
                                 "`meta_optimizer` must be None.")
            self._set_meta_optimizer(meta_optimizer)
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)
        if self.learns_weight_net and not self.meta_optimizer.built:
            self.meta_optimizer.build(self.weight_net.trainable_variables)

    def get_compile_config(self) -> dict:
        config = super().get_compile_config()
        if config and self.learns_weight_net:
            config["meta_optimizer"] = keras.optimizers.serialize(
                self.meta_optimizer.inner_optimizer if self._scaled_meta_optimizer
                else self.meta_optimizer)
        return config

    def build(self, input_shape=None) -> None:
        """Builds the meta optimizer (on the weight network's variables), then the wrapper.

        The weight network itself is created and built in ``__init__``, right after the
        classifier, so that its initial weights are drawn at the same point of the global
        random stream however the model is used afterwards.
        """
        if self.learns_weight_net and not self.meta_optimizer.built:
            self.meta_optimizer.build(self.weight_net.trainable_variables)
        super().build(input_shape)

    def make_weighting(self, weight_normalization: str) -> weightings.Weighting:
        """The method's weighting (``LookAheadWeighting``; the variants return theirs)."""
        return LookAheadWeighting(weight_normalization)

    def default_meta_optimizer(self) -> keras.optimizers.Optimizer:
        """The paper's plain gradient step on the weight network, ``SGD(α)``."""
        return keras.optimizers.SGD(DEFAULT_META_LEARNING_RATE)

    # ----------------------------------------------------------------- set-up
    def set_meta_data(self, meta_data) -> None:
        """Attaches the held-out meta set (``meta_source="dataset"``).

        Args:
            meta_data: An ``(x, y)`` tuple of arrays (meta batches of ``meta_batch_size``
                are drawn from it without replacement) or a ``tf.data.Dataset`` of
                ``(x, y)`` batches. Checked like ``fit``'s data.
        """
        if self.meta_source != "dataset":
            raise ValueError(f"`meta_data` is only used with meta_source='dataset', got "
                             f"meta_source={self.meta_source!r}.")
        if meta_data is None:
            raise ValueError("`meta_data` must be an (x, y) tuple or a tf.data.Dataset, got None.")
        self._meta_arrays = self._meta_dataset = None
        self._meta_iterator = self._distributed_meta_iterator = None
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

    @property
    def has_meta_set(self) -> bool:
        """Whether the meta batches have a source (always, unless "dataset" lacks data)."""
        return self.meta_source != "dataset" or (
            self._meta_arrays is not None or self._meta_dataset is not None)

    def _check_meta_set(self) -> None:
        if not self.has_meta_set:
            raise ValueError(missing_meta_set_message(type(self).__name__))

    def fit(self, *args, **kwargs):
        self._check_meta_set()  # before any work is done
        return super().fit(*args, **kwargs)

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

    # ---------------------------------------------------------------- weights
    def margin_logits(self, step: TrainingStep):
        logits = step.logits_adv if self.margin_source == "adversarial" else step.logits_clean
        return tf.stop_gradient(logits)

    def meta_step(self, step: TrainingStep) -> None:
        """The weight network's meta update, on the steps that take one (the weighting's
        ``update``): after the warm-up, every ``meta_update_every``-th step."""
        features = tf.stop_gradient(self.weight_features(step))
        iteration = tf.cast(self.optimizer.iterations, tf.int64)
        update = tf.logical_and(step.reweighting,
                                tf.equal(iteration % self.meta_update_every, 0))
        fetch = self._next_meta_batch if self._meta_dataset is not None else None
        # The update all-reduces (weight sums, inner gradient, hypergradient) and applies an
        # optimizer: under tf.distribute that needs the cross-replica branch.
        replicas.synchronized_cond(update, self.meta_update, args=(step, features),
                                   fetch=fetch)

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
            return self.loss_targets(step, coefficients, mask=mask)

        meta_terms = self.meta_loss_terms(step, mask, meta_batch)

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

    def meta_loss_terms(self, step: TrainingStep, mask=None, meta_batch=None) -> list:
        """The meta loss as a list of functions of the look-ahead values θ̃.

        Each term is the mean cross-entropy over the global meta batch of the classifier at
        θ̃ (training mode, the step's non-trainable values): on the meta batch's
        adversarial examples ("adversarial"), on its clean inputs ("clean"), or both.
        """
        if self.meta_source == "dataset":
            self._check_meta_set()
        x_meta, y_meta, reused_adv = self.meta_inputs(step, mask, meta_batch)
        size = weighting.global_batch_size(y_meta)

        def cross_entropy_at(inputs_at):
            def term(theta_prime):
                logits, _ = self.forward(theta_prime, step.non_trainable, inputs_at(theta_prime))
                return tf.reduce_sum(losses.cross_entropy(y_meta, logits)) / size
            return term

        terms = []
        if self.meta_objective in ("adversarial", "both"):
            if reused_adv is not None:
                terms.append(cross_entropy_at(lambda _: reused_adv))
            elif self.meta_attack_model == "current":
                x_meta_adv = self.attack_meta_batch(step, x_meta, y_meta)
                terms.append(cross_entropy_at(lambda _: x_meta_adv))
            else:
                terms.append(cross_entropy_at(
                    lambda theta_prime: self.attack_meta_batch(step, x_meta, y_meta,
                                                               theta_prime)))
        if self.meta_objective in ("clean", "both"):
            terms.append(cross_entropy_at(lambda _: x_meta))
        return terms

    def attack_meta_batch(self, step: TrainingStep, x_meta, y_meta, theta=None):
        """Adversarial examples of the meta batch from the model's own training attack.

        Same attack, objective (e.g. TRADES's KL for BiLAW-TRADES), warm-up strength and
        seed stream as the training batch's; against the classifier at ``theta`` (the
        look-ahead values, held constant) or, if None, the current classifier; inference
        mode, as for the training batch.
        """
        if theta is None:
            model_fn = self.classifier_fn(training=False)
        else:
            frozen = [tf.stop_gradient(value) for value in theta]

            def model_fn(inputs):
                return self.classifier.stateless_call(frozen, step.non_trainable, inputs,
                                                      training=False)[0]
        logits_clean = None
        if self.needs_natural_logits:  # the TRADES objective maximises KL to clean logits
            logits_clean = tf.stop_gradient(model_fn(x_meta))
        x_meta_adv, _ = self._attack(x_meta, y_meta, logits_clean, self.attack_seed(),
                                     model_fn=model_fn)
        return x_meta_adv

    def meta_inputs(self, step: TrainingStep, mask, meta_batch=None):
        """(x_meta, y_meta, reused x_adv or None) of the meta loss.

        Under tf.distribute each replica returns its share of the global meta batch: its
        own held-out samples ("split"), its slice of the ``meta_batch_size`` indices drawn
        from ``meta_data`` arrays (the same draw on every replica), or its shard of the
        dataset's batch. "batch" and "split" reuse the training batch's adversarial
        examples; "dataset" returns None there (the meta batch is attacked on its own).
        """
        if self.meta_source == "batch":
            return step.x, step.y, step.x_adv
        if self.meta_source == "split":
            start = tf.cast(tf.reduce_sum(mask), tf.int32)
            return step.x[start:], step.y[start:], step.x_adv[start:]
        if self._meta_arrays is not None:
            x_all, y_all = self._meta_arrays
            count = tf.shape(y_all)[0]
            # Without replacement within a meta batch; independent draws across steps.
            order = keras.random.shuffle(tf.range(count), seed=self.train_seed)
            wanted = tf.minimum(count, self.meta_batch_size)
            index = order[:wanted]
            first, last = replicas.replica_slice(self.meta_batch_size)
            index = index[tf.minimum(first, wanted):tf.minimum(last, wanted)]
            x_meta, y_meta = tf.gather(x_all, index), tf.gather(y_all, index)
        else:
            if meta_batch is None:
                meta_batch = self._next_meta_batch()
            x_meta, y_meta = meta_batch[0], meta_batch[1]
            y_meta = tf.cast(tf.reshape(y_meta, [-1]), tf.int32)
        return tf.cast(x_meta, step.x.dtype), y_meta, None

    # ---------------------------------------------------------- serialisation
    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            margin=self.margin,
            meta_set=keras.saving.serialize_keras_object(self.meta_set),
            look_ahead=keras.saving.serialize_keras_object(self.look_ahead),
            weight_normalization=self.weight_normalization,
            margin_source=self.margin_source,
            base=self.base,
            beta=self.beta,
        )
        if self._custom_objective:
            config["objective"] = keras.saving.serialize_keras_object(self.objective)
        if self.learns_weight_net:
            config["weight_net"] = keras.saving.serialize_keras_object(self.weight_net)
        # The meta optimizer is in the compile config; the meta set is data, not
        # configuration: a loaded model with meta_source="dataset" refuses to train until
        # ``set_meta_data`` attaches it again.
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        # Files of earlier releases: flat options and the meta optimizer in the config.
        if any(key in config for key in FLAT_OPTIONS):
            config["_flat_from_config"] = True
        if config.get("meta_optimizer") is not None:
            config["meta_optimizer"] = keras.optimizers.deserialize(config["meta_optimizer"])
            config["_meta_optimizer_from_config"] = True
        return super().from_config(config, custom_objects=custom_objects)
