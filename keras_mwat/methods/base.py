"""``AdversarialTrainingModel``: the one ``train_step`` / ``test_step`` of every method.

A method is an **objective** (``keras_mwat.objectives``: what the attack maximises and the
named per-sample loss terms, each weighted or not) and a **weighting**
(``keras_mwat.weightings``: a pure ``weights(step)`` and, for one that learns, an
``update(step)`` the step calls first). The named methods (``PGDATModel``, ``MAILModel``,
``MWATModel``, ...) are presets of the two; ``AdversarialTrainingModel(classifier,
objective=..., weighting=...)`` trains any combination of the library's or the user's own.

The step: attack the batch with the classifier in inference mode; one training-mode forward
on the adversarial batch (``stateless_call``: exactly one BatchNorm update per step, and the
recorded forward is reused for any look-ahead step); weights; one gradient of the weighted
loss through ``optimizer.scale_loss``; ``optimizer.apply``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_mwat import _compat, losses, margins, objectives, validation, weighting, weightings
from keras_mwat.attacks import PGD, Attack
from keras_mwat.attacks import get as get_attack
from keras_mwat.methods import replicas
from keras_mwat.methods.replicas import replica_count
from keras_mwat.training_mode import output_depends_on_training

_ACCURACY_NAMES = ("accuracy", "acc", "sparse_categorical_accuracy")


@dataclasses.dataclass
class TrainingStep:
    """What one training step has computed, handed to a method's hooks.

    Attributes:
        x: Clean inputs, (n, ...).
        y: Integer labels, (n,).
        x_adv: Adversarial inputs (no gradient path), (n, ...).
        logits_clean: Clean logits in inference mode (computed once per step; when
            ``shares_clean_forward``, the equal training-mode ``logits_natural``), (n, K).
        logits_adv: Training-mode logits on ``x_adv``, recorded by ``tape``, (n, K).
        logits_natural: Training-mode logits on ``x`` (only for methods that ask for them).
        kappa: GAIRAT's per-sample count of attack steps classified correctly (the
            attack's ``AttackTrace.correct_steps``), or None.
        theta: The classifier's trainable values, as tensors watched by ``tape``.
        non_trainable: The classifier's non-trainable values before the step.
        tape: The persistent tape that recorded the training-mode forward passes.
        weighted_loss: Per-sample loss the weights multiply, (n,).
        unweighted_loss: Per-sample loss outside the weights, (n,) or None.
        reweighting: Boolean scalar tensor: whether the warm-up is over.
        sample_weight: ``fit``'s per-sample weights as float32 (n,), or None. They multiply
            every loss term (weighted and unweighted), in the real and the virtual step.
        model: The ``AdversarialTrainingModel`` taking the step (for weightings that need
            its attack, classifier or optimizer).
        precomputed_weights: Weights a weighting's ``update`` computed for this very step
            as a by-product (the non-parametric reweighting), for its ``weights`` to
            return; None otherwise.
    """

    x: Any
    y: Any
    x_adv: Any
    logits_clean: Any
    logits_adv: Any = None
    logits_natural: Any = None
    kappa: Any = None
    theta: Any = None
    non_trainable: Any = None
    tape: Any = None
    weighted_loss: Any = None
    unweighted_loss: Any = None
    reweighting: Any = None
    sample_weight: Any = None
    model: Any = None
    precomputed_weights: Any = None


class _EpochCounter(keras.callbacks.Callback):
    """Keeps the model's in-graph epoch counter in step with ``fit``'s epochs."""

    def __init__(self, owner):
        super().__init__()
        self._owner = owner

    def on_epoch_begin(self, epoch, logs=None):
        self._owner.epoch.assign(epoch)


@contextlib.contextmanager
def _readable_batch_errors():
    """Turns a failed in-graph batch check (a TensorFlow ``InvalidArgumentError`` whose text
    starts with the graph's trace) into a ``ValueError`` whose message is the check's own.

    Other errors pass unchanged; the TensorFlow error stays the ``__context__``.
    """
    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        message = validation.batch_check_message(str(error))
        if message is None:
            raise
        raise ValueError(message) from None


def _to_labels(y, num_classes: int):
    """Integer class indices of shape (n,) from integer or one-hot labels."""
    y = tf.convert_to_tensor(y)
    if y.shape.rank == 2 and y.shape[-1] == num_classes and num_classes > 1:
        return tf.argmax(y, axis=-1, output_type=tf.int32)
    return tf.cast(tf.reshape(y, [-1]), tf.int32)


_LOSS_HINT = ("pass keras.losses.SparseCategoricalCrossentropy(from_logits=True), a callable "
              "loss(y, logits) -> per-sample losses, or nothing (the default, "
              "keras_mwat.losses.cross_entropy)")


def per_sample_loss(loss, num_classes: int):
    """The per-sample base loss ``loss(y, logits) -> (n,)`` that ``compile(loss=...)`` gives.

    Accepts None (``keras_mwat.losses.cross_entropy``), a ``keras.losses.Loss`` taking
    logits (e.g. ``SparseCategoricalCrossentropy(from_logits=True)``; its unreduced
    ``call`` is used, on float32 logits, and the model applies its own weighting and
    averaging) or a callable returning one loss per sample. Anything else is refused here,
    up front, with a message saying what to pass; a callable or ``Loss`` is tried once on
    two samples.

    Args:
        loss: What ``compile`` received as ``loss``.
        num_classes: Number of classes of the classifier.

    Returns:
        A callable ``(y, logits) -> (n,)`` tensor.

    Example:
    ```python
    fn = per_sample_loss(keras.losses.SparseCategoricalCrossentropy(from_logits=True), 10)
    fn(tf.constant([3, 1]), tf.zeros((2, 10)))  # [log 10, log 10]
    ```
    """
    if loss is None:
        return losses.cross_entropy
    if isinstance(loss, str):
        raise ValueError(f"`loss` cannot be a string: got {loss!r}. The classifier returns "
                         f"logits; {_LOSS_HINT}.")
    if isinstance(loss, keras.losses.Loss):
        if loss.get_config().get("from_logits", True) is not True:
            raise ValueError(
                f"`loss` {type(loss).__name__} has from_logits=False, but the classifier "
                f"returns logits: pass {type(loss).__name__}(from_logits=True).")
        keras_loss = loss

        def function(y, logits):
            return keras_loss.call(y, losses.at_least_float32(logits))
    elif callable(loss):
        function = loss
    else:
        raise TypeError(f"`loss` must be a callable loss(y, logits) -> per-sample losses or a "
                        f"keras.losses.Loss, got {loss!r}; {_LOSS_HINT}.")
    try:
        probe = function(tf.constant([0, 1 % num_classes], tf.int32),
                         tf.zeros((2, num_classes), tf.float32))
    except Exception as error:  # noqa: BLE001 - re-raised with what was expected
        raise ValueError(
            f"`loss` {loss!r} failed on integer labels of shape (2,) and logits of shape "
            f"(2, {num_classes}): {error}. It must map (y, logits) to per-sample losses; "
            f"{_LOSS_HINT}.") from error
    if tuple(getattr(probe, "shape", ())) != (2,):
        raise ValueError(
            f"`loss` {loss!r} must return one loss per sample, shape (n,), but returned shape "
            f"{tuple(getattr(probe, 'shape', ()))} for n = 2 (a reduced loss?); {_LOSS_HINT}.")
    return function


@keras.saving.register_keras_serializable(package="keras_mwat")
class AdversarialTrainingModel(_compat.SkipSymbolicBuildWhenBuilt, keras.Model):
    """Adversarial training of a logits classifier with any objective and weighting.

    The base of every method: ``objective`` says what the attack maximises and which
    per-sample loss terms the sample weights multiply; ``weighting`` gives those weights.
    The named methods (``PGDATModel``, ``TRADESModel``, ``MAILModel``, ``MWATModel``, ...)
    are presets with their own arguments; the training and evaluation steps are shared.
    Calling the model calls the classifier, so ``predict`` returns logits.

    Every method trains under ``tf.distribute.MirroredStrategy`` and
    ``MultiWorkerMirroredStrategy`` (build the model under ``strategy.scope()``): weights
    are normalised, and losses averaged, over the global batch, so N replicas take the
    steps one device takes on the same global batches (up to float rounding; with a
    deterministic attack, a classifier without unsynchronised BatchNorm and meta batches
    that do not depend on random draws). Random attack starts are drawn per replica from
    seeds of their own. ``TPUStrategy`` is untested. Under the ``mixed_float16`` policy
    losses are scaled by the optimizer (Keras wraps it in a ``LossScaleOptimizer``);
    margins, weights and losses are float32. ``jit_compile=True`` (XLA) works on one
    device and raises a ``ValueError`` under a strategy.

    Methods that also train on the clean inputs (TRADES, MART, the TRADES bases) run one
    clean forward pass, not two, when the classifier has no layer that behaves differently
    in training (``shares_clean_forward``, from
    ``keras_mwat.training_mode.output_depends_on_training``): the recorded training-mode
    logits then also give the attack's and the metrics' clean logits, which are equal.

    Args:
        classifier: A built Keras model mapping inputs to logits.
        attack: The training attack (default: L-inf PGD-10, eps 8/255, step 2/255, in
            [0, 1]). Any ``keras_mwat.attacks.Attack``.
        objective: A ``keras_mwat.objectives.Objective`` (default PGD-AT's
            ``CrossEntropyObjective``), or "at", "trades", "mart".
        weighting: A ``keras_mwat.weightings.Weighting`` (default ``Uniform``).
        reweight_start_epoch: Epoch (counted from 0) from which the method's weights are
            used; uniform weights before it.
        seed: Seed of the in-graph randomness (attack starts, meta batches).
        **kwargs: Passed to ``keras.Model``.

    Example:
    ```python
    model = keras_mwat.AdversarialTrainingModel(
        keras_mwat.zoo.small_cnn(), objective=keras_mwat.objectives.TRADESObjective(6.0),
        weighting=keras_mwat.weightings.MAILWeighting(bias=0.0, slope=2.0),
        attack=keras_mwat.attacks.PGD(eps=0.3, step_size=0.01, num_steps=40))
    model.compile(optimizer="adam")
    model.fit(x_train, y_train, epochs=1)
    ```
    """

    #: Whether the method needs the attack's ``AttackTrace`` (besides its weighting's).
    needs_attack_trace = False
    #: Whether the class sets its objective and weighting from arguments of its own (a named
    #: method): its config then holds those arguments, not the two objects.
    preset = False

    def __init__(
        self,
        classifier: keras.Model,
        attack: Attack | dict | None = None,
        objective: objectives.Objective | str | dict | None = None,
        weighting: weightings.Weighting | dict | None = None,
        reweight_start_epoch: int = 0,
        seed: int | None = None,
        **kwargs,
    ):
        _compat.require_tensorflow_backend()
        super().__init__(**kwargs)
        self.input_spec_shape, self.num_classes = validation.check_classifier(classifier)
        self.classifier = classifier
        self.attack = get_attack(attack) if attack is not None else PGD()
        if not isinstance(self.attack, Attack):
            raise TypeError(
                f"`attack` must be a keras_mwat.attacks.Attack, got {type(attack).__name__}."
            )
        self.reweight_start_epoch = validation.check_int(
            reweight_start_epoch, "reweight_start_epoch", minimum=0
        )
        if seed is not None:
            seed = validation.check_int(seed, "seed", minimum=0)
        self.seed = seed
        self.train_seed = self._saved_seed_generator(seed, "train_seed")
        self.eval_seed = self._saved_seed_generator(
            None if seed is None else seed + 7919, "eval_seed"
        )
        self.epoch = keras.Variable(0, dtype="int64", trainable=False, name="epoch")
        # The fraction of the training attack's radius, ``attack.scaled(attack_strength)``
        # (see callbacks.EpsilonWarmup).
        self.attack_strength = keras.Variable(1.0, dtype="float32", trainable=False,
                                              name="attack_strength")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.robust_accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(
            name="robust_accuracy"
        )
        self.mean_weight_tracker = keras.metrics.Mean(name="mean_weight")
        self.weight_std_tracker = keras.metrics.Mean(name="weight_std")
        self.extra_metrics = []
        self.base_loss = losses.cross_entropy
        #: What the attack maximises and the per-sample losses (PGD-AT's by default).
        self.objective = (objectives.CrossEntropyObjective() if objective is None
                          else objectives.get(objective))
        #: The per-sample weights (uniform by default).
        self.weighting = weightings.get(weighting)
        self.weighting.check(self)
        #: Whether the training-mode forward on the clean inputs (methods that train on
        #: them) also gives the attack's and the metrics' clean logits: only when no layer
        #: behaves differently in training, so that the two are equal.
        self.shares_clean_forward = not output_depends_on_training(classifier)
        low, high = self.attack.value_range or (0.0, 1.0)
        probe = np.random.default_rng(0).uniform(low, high, size=(4, *self.input_spec_shape))
        validation.check_logits(classifier(probe.astype("float32"), training=False),
                                name="classifier")

    # ------------------------------------------------------------------ set-up
    def _saved_seed_generator(self, seed, name: str) -> keras.random.SeedGenerator:
        """A SeedGenerator whose state is a model variable, so ``.keras`` files and
        ``BackupAndRestore`` keep it (Keras does not save a SeedGenerator's state)."""
        generator, state = _compat.saved_seed_generator(seed, name)
        setattr(self, f"{name}_state", state)
        return generator

    def build(self, input_shape=None) -> None:
        """Builds the wrapper: called by Keras on first use, never by a constructor.

        Keras builds a model on its first call (``compile`` makes one, see
        ``finish_init``) or from a saved build config when loading; once built, it accepts
        no new state. The classifier is built already and every method creates its
        sub-objects in ``__init__``, so a subclass may add its own state (trackers,
        layers, variables) after ``super().__init__(...)``. Subclasses that create state
        here call ``super().build(input_shape)`` last.

        Args:
            input_shape: Shape of a batch of inputs, ``(batch, *sample_shape)``; None means
                the classifier's.
        """
        if input_shape is not None and tuple(input_shape[1:]) != tuple(self.input_spec_shape):
            raise ValueError(
                f"`input_shape` must be (batch, *{tuple(self.input_spec_shape)}) (the "
                f"classifier's inputs), got {tuple(input_shape)!r}.")

    def finish_init(self) -> None:
        """Builds the wrapper now, if it is not built yet (``compile`` calls it).

        Calls the model once, eagerly, on one input in the middle of the attack's
        ``value_range``: a built wrapper is what ``save_weights``, ``export`` and Keras
        Tuner checkpoints need. Constructors do not call it (a built Keras model accepts no
        new state: subclasses add theirs after ``super().__init__``); call it yourself to
        build an uncompiled model.

        Example:
        ```python
        model = keras_mwat.PGDATModel(keras_mwat.zoo.tiny_cnn())
        model.finish_init()
        model.save_weights("pgd_at.weights.h5")
        ```
        """
        if not self.built:
            low, high = self.attack.value_range or (0.0, 1.0)
            self(np.full((1, *self.input_spec_shape), (low + high) / 2, "float32"))

    def call(self, inputs, training=False):
        return self.classifier(inputs, training=training)

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, check_batches=True,
                **kwargs):
        """Configures training; the keywords are those of ``keras.Model.compile``.

        ``check_batches`` (default True): every training and evaluation batch is checked
        inside the graph before the step uses it (finite inputs inside the attack's
        ``value_range``, integer labels in ``[0, num_classes)``, finite sample weights
        >= 0); a bad batch stops ``fit`` / ``evaluate`` with a ``ValueError`` naming the
        problem, the value seen and the training step, before the optimizer applies that
        step's update. Under XLA (``jit_compile=True``), where asserts compile away,
        ``fit`` and ``evaluate`` check the batches of a ``tf.data.Dataset`` in its pipeline
        instead (arrays are checked whole, eagerly; other inputs only by their first batch).
        ``check_batches=False`` turns the per-batch checks off.

        ``loss`` is the per-sample base loss of methods whose loss is a cross-entropy on
        adversarial logits (default ``keras_mwat.losses.cross_entropy``): a callable
        ``loss(y, logits) -> (n,)`` or a ``keras.losses.Loss`` taking logits, e.g.
        ``keras.losses.SparseCategoricalCrossentropy(from_logits=True)`` (see
        ``per_sample_loss``; strings and ``from_logits=False`` are refused here). The
        model applies its own sample weights and averaging. ``metrics`` are computed on
        clean logits; clean ``accuracy`` and ``robust_accuracy`` are always logged.

        ``jit_compile=True`` (XLA) works on one device; it raises a ``ValueError`` where it
        cannot work (under ``MirroredStrategy`` / ``MultiWorkerMirroredStrategy``, or with a
        ``tf.data`` ``meta_data``), and ``jit_compile="auto"`` then turns XLA off.
        """
        obstacle = self.xla_obstacle()
        if obstacle is not None and kwargs.get("jit_compile", "auto") is True:
            raise ValueError(f"`jit_compile=True` is not supported {obstacle}; compile with "
                             "jit_compile=False (or the default 'auto').")
        self.base_loss = per_sample_loss(loss, self.num_classes)
        self._loss_argument = loss
        self.check_batches = bool(check_batches)
        extra = []
        for metric in metrics or []:
            if isinstance(metric, str) and metric in _ACCURACY_NAMES:
                continue
            metric = keras.metrics.get(metric)
            if not isinstance(metric, keras.metrics.Metric):
                metric = keras.metrics.MeanMetricWrapper(metric, name=metric.__name__)
            extra.append(metric)
        self.extra_metrics = extra
        self._metrics_argument = list(metrics or [])
        self.finish_init()
        super().compile(optimizer=optimizer, **kwargs)
        if obstacle is not None and self.jit_compile:  # "auto" chose XLA (e.g. on a GPU)
            self.jit_compile = False
        self.optimizer.build(self.classifier.trainable_variables)

    def xla_obstacle(self) -> str | None:
        """Why the training step cannot be XLA-compiled here (None if it can).

        XLA cannot compile a step replicated by ``MirroredStrategy`` or
        ``MultiWorkerMirroredStrategy`` (TensorFlow fails when running it).
        """
        strategy = self.distribute_strategy
        kinds = {"MirroredStrategy": tf.distribute.MirroredStrategy,
                 "MultiWorkerMirroredStrategy": tf.distribute.MultiWorkerMirroredStrategy}
        for name, kind in kinds.items():
            if isinstance(strategy, kind):
                return f"under tf.distribute.{name}"
        return None

    def get_compile_config(self) -> dict:
        """The ``compile`` arguments, so a loaded model continues ``fit`` without compiling."""
        config = super().get_compile_config()
        if config:
            config["loss"] = keras.saving.serialize_keras_object(
                getattr(self, "_loss_argument", None) or self.base_loss)
            config["metrics"] = keras.saving.serialize_keras_object(self._metrics_argument)
            config["check_batches"] = self.checks_batches
        return config

    def compile_from_config(self, config) -> None:
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)

    @property
    def metrics(self):
        return [
            self.loss_tracker,
            self.accuracy_tracker,
            self.robust_accuracy_tracker,
            self.mean_weight_tracker,
            self.weight_std_tracker,
            *self.method_metrics(),
            *self.extra_metrics,
        ]

    def method_metrics(self) -> list:
        """Extra trackers a method logs during training (e.g. MWAT's ``meta_loss``)."""
        return []

    # -------------------------------------------------------------- method hooks
    @property
    def needs_natural_logits(self) -> bool:
        """Whether ``sample_losses`` needs training-mode logits on the clean inputs."""
        return self.objective.needs_natural_logits

    def attack_loss(self, x, y, logits_clean):
        """The per-sample objective the training attack maximises, or None for CE."""
        return self.objective.attack_loss(x, y, logits_clean)

    def sample_losses(self, step: TrainingStep):
        """Per-sample losses ``(weighted, unweighted_or_None)``, each of shape (n,)."""
        return self.objective.sample_losses(self, step)

    def sample_weights(self, step: TrainingStep):
        """Per-sample weights before normalisation, shape (n,), or None for uniform: the
        weighting's ``weights`` (no side effect on training state)."""
        if step.model is None:
            step = dataclasses.replace(step, model=self)
        return self.weighting.weights(step)

    def current_weights(self, step: TrainingStep):
        """The weights the method gives a step now (inspection): ``sample_weights``."""
        return self.sample_weights(step)

    def inspect_weights(self, x, y) -> dict:
        """Margins and normalised weights the method gives a batch now; trains nothing.

        Runs the training attack (its own seed, not the training one) and an inference
        forward. Returns NumPy arrays: ``margin`` (Definition 2.2, on the adversarial
        logits), ``weight`` (normalised over the batch as in training, on the scale where a
        uniform weight is 1: "sum"-normalised weights are shown times the batch size) and
        ``y``.
        """
        inspected = self._inspect(x, y)
        return {key: inspected[key] for key in ("margin", "weight", "y")}

    def _inspect(self, x, y, trace: bool = False) -> dict:
        """``inspect_weights``, plus ``prediction`` (the class predicted on each adversarial
        example) and, with ``trace`` and an attack that records one, ``kappa`` (else None):
        all from the one attack run."""
        y = _to_labels(tf.convert_to_tensor(y), self.num_classes)
        x = tf.convert_to_tensor(x)
        logits_clean = self.classifier(x, training=False)
        x_adv, kappa = self._attack(x, y, logits_clean, self.attack.seed_generator,
                                    trace=self.needs_trace or (trace and self.attack.records_trace))
        step = TrainingStep(x=x, y=y, x_adv=x_adv, logits_clean=logits_clean, kappa=kappa,
                            logits_adv=self.classifier(x_adv, training=False), model=self)
        if self.needs_natural_logits:
            step.logits_natural = logits_clean
        step.weighted_loss, step.unweighted_loss = self.sample_losses(step)
        raw, mode = self.current_weights(step), self.weight_normalization_mode()
        if mode == "sum":  # the same loss as "mean": shown on the mean-1 scale, relative to
            mode = "mean"  # a uniform weight, so that methods compare on one scale
        if raw is None:  # uniform, as in train_step
            raw, mode = tf.ones(tf.shape(y)), "mean"
        elif int(self.epoch.numpy()) < self.reweight_start_epoch:
            raw = tf.ones(tf.shape(y))
        return {"margin": margins.probability_margin(y, step.logits_adv).numpy(),
                "weight": weighting.normalize(raw, mode).numpy(), "y": y.numpy(),
                "prediction": tf.argmax(step.logits_adv, axis=1).numpy(),
                "kappa": None if kappa is None else kappa.numpy()}

    def weight_normalization_mode(self) -> str:
        """How the method's weights are normalised over the global batch (the weighting's
        ``normalization``)."""
        return self.weighting.normalization

    # --------------------------------------------------------------- the steps
    def classifier_fn(self, training=False):
        return lambda inputs: self.classifier(inputs, training=training)

    def forward(self, theta, non_trainable, inputs):
        """Training-mode forward with explicit parameter values: (logits, new non-trainables)."""
        return self.classifier.stateless_call(theta, non_trainable, inputs, training=True)

    def attack_seed(self, generator: keras.random.SeedGenerator | None = None):
        """The seed of the attack's draws in this replica (from ``generator``, default the
        training one).

        The generator itself on one device; under tf.distribute, a stateless seed of its own
        per replica (``replicas.replica_seed``), drawn only if the attack draws at all, so
        that a deterministic attack leaves the generator as one device would.
        """
        generator = self.train_seed if generator is None else generator
        if not getattr(self.attack, "random_start", True):
            return generator
        return replicas.replica_seed(generator)

    @property
    def needs_trace(self) -> bool:
        """Whether the training attack must return its ``AttackTrace`` (GAIRAT's kappa)."""
        # ``needs_kappa``: the name of earlier releases, for methods defined outside.
        return bool(self.needs_attack_trace or self.weighting.needs_attack_trace
                    or getattr(self, "needs_kappa", False))

    def training_attack(self) -> Attack:
        """The attack as a training step runs it: the method objective's random start
        (TRADES: ``x + 0.001 N(0, 1)``) on the warm-up's radius (``attack_strength``)."""
        attack = self.attack.scaled(tf.convert_to_tensor(self.attack_strength))
        if self.objective.attack_init is not None:
            attack = attack.with_init(self.objective.attack_init)
        return attack

    def _attack(self, x, y, logits_clean, seed, model_fn=None, trace=None):
        """The training attack of ``(x, y)``: the method's objective, the warm-up radius.

        ``model_fn`` defaults to the classifier in inference mode; MWAT passes its
        look-ahead classifier to attack the meta batch. Returns ``(x_adv, kappa)``, kappa
        (the trace's ``correct_steps``) when ``trace`` (default: ``needs_trace``) else None.
        """
        objective = self.attack_loss(x, y, logits_clean)
        model_fn = self.classifier_fn(training=False) if model_fn is None else model_fn
        attack = self.training_attack()
        if self.needs_trace if trace is None else trace:
            x_adv, attack_trace = attack.perturb_with_trace(model_fn, x, y, seed=seed,
                                                            loss_fn=objective)
            kappa = attack_trace.correct_steps
        else:
            x_adv = attack.perturb(model_fn, x, y, seed=seed, loss_fn=objective)
            kappa = None
        return tf.stop_gradient(x_adv), kappa

    @property
    def checks_batches(self) -> bool:
        """Whether each batch is checked (``compile(check_batches=...)``, default True)."""
        return getattr(self, "check_batches", True)

    def _check_batch(self, x, y, sample_weight, training: bool):
        """``validation.check_batch_in_graph`` of a step's batch, naming the step; the batch
        unchanged when the checks are off or compiled by XLA (which drops asserts)."""
        if not self.checks_batches or self.jit_compile is True or y is None:
            return x, y, sample_weight

        def where():
            if training:
                iteration = tf.cast(tf.convert_to_tensor(self.optimizer.iterations), tf.int64)
                return tf.strings.format("training step {} (epoch {})", (
                    iteration + 1, tf.convert_to_tensor(self.epoch) + 1))
            seen = tf.cast(tf.convert_to_tensor(self.loss_tracker.count), tf.int64)
            size = tf.maximum(tf.shape(x, out_type=tf.int64)[0], 1)
            return tf.strings.format(
                "evaluation batch {} (evaluate or validation_data; from sample index {})",
                (seen // size + 1, seen))

        return validation.check_batch_in_graph(
            x, y, sample_weight, num_classes=self.num_classes,
            value_range=self.attack.value_range, where=where)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, y, sample_weight = self._check_batch(x, y, sample_weight, training=True)
        y = _to_labels(y, self.num_classes)
        classifier_variables = self.classifier.trainable_variables
        theta = [tf.convert_to_tensor(v) for v in classifier_variables]
        non_trainable = [tf.convert_to_tensor(v) for v in self.classifier.non_trainable_variables]
        tape = tf.GradientTape(persistent=True, watch_accessed_variables=False)
        logits_natural = None
        if self.needs_natural_logits and self.shares_clean_forward:
            # One clean forward, recorded for the gradient, also serves the attack and the
            # metrics (equal to inference mode for this classifier).
            with tape:
                tape.watch(theta)
                logits_natural, _ = self.forward(theta, non_trainable, x)
            logits_clean = tf.stop_gradient(logits_natural)
        else:
            logits_clean = tf.stop_gradient(self.classifier(x, training=False))
        # The attack waits for the clean logits: otherwise the executor may run that
        # forward pass late, its activations alive beside the step's own (peak memory).
        with tf.control_dependencies([logits_clean]):
            x_adv, kappa = self._attack(x, y, logits_clean, self.attack_seed())

        step = TrainingStep(x=x, y=y, x_adv=x_adv, logits_clean=logits_clean, kappa=kappa,
                            theta=theta, non_trainable=non_trainable, model=self)
        if sample_weight is not None:
            step.sample_weight = tf.cast(tf.reshape(sample_weight, [-1]), tf.float32)
        step.reweighting = tf.greater_equal(self.epoch, self.reweight_start_epoch)
        with tape:
            tape.watch(theta)
            step.logits_adv, new_non_trainable = self.forward(theta, non_trainable, x_adv)
            if self.needs_natural_logits:
                if logits_natural is None:
                    logits_natural, _ = self.forward(theta, non_trainable, x)
                step.logits_natural = logits_natural
            step.weighted_loss, step.unweighted_loss = self.sample_losses(step)
        step.tape = tape

        self.weighting.update(step)  # a weighting that learns (MWAT's meta step)
        raw_weights = self.sample_weights(step)
        mode = self.weight_normalization_mode()
        if raw_weights is None:
            raw_weights = tf.ones(tf.shape(step.y), step.weighted_loss.dtype)
            mode = "mean"
        else:
            raw_weights = tf.where(step.reweighting, tf.stop_gradient(raw_weights),
                                   tf.ones_like(raw_weights))
        weights = tf.stop_gradient(weighting.normalize(raw_weights, mode))
        coefficients = tf.stop_gradient(weighting.loss_coefficients(raw_weights, mode))
        loss = self.total_loss(step, coefficients)
        gradients = self.loss_gradients(step, coefficients)
        self.optimizer.apply(gradients, classifier_variables)
        for variable, value in zip(self.classifier.non_trainable_variables, new_non_trainable):
            variable.assign(value)
        del tape

        self._update_training_metrics(step, loss, weights)
        return self._logs()

    def total_loss(self, step: TrainingStep, coefficients):
        """The replica-local weighted loss (summed over replicas: the global loss)."""
        targets, output_gradients = self.loss_targets(step, coefficients)
        return tf.add_n([tf.reduce_sum(t * g) for t, g in zip(targets, output_gradients)])

    def loss_gradients(self, step: TrainingStep, coefficients, theta=None):
        """Gradients of the (optimizer-scaled) weighted loss w.r.t. the classifier values.

        Reuses the recorded forward: the gradient of ``sum_i c_i l_i`` is the backward pass
        of the per-sample losses with ``c`` as output gradient.
        """
        scale = self.optimizer.scale_loss(tf.constant(1.0))
        targets, output_gradients = self.loss_targets(step, coefficients)
        output_gradients = [g * tf.cast(scale, g.dtype) for g in output_gradients]
        return step.tape.gradient(targets, step.theta if theta is None else theta,
                                  output_gradients=output_gradients)

    def loss_targets(self, step: TrainingStep, coefficients, mask=None):
        """(per-sample loss tensors, their output gradients) for a weighted loss.

        The unweighted term (e.g. TRADES's clean CE) is averaged over the global batch, or
        over the samples of ``mask`` (a 0/1 float mask) when given; ``fit``'s
        ``sample_weight`` multiplies both terms.
        """
        targets = [step.weighted_loss]
        output_gradients = [coefficients]
        if step.unweighted_loss is not None:
            targets.append(step.unweighted_loss)
            if mask is None:
                size = weighting.global_batch_size(step.y)
                output_gradients.append(tf.ones_like(step.unweighted_loss) / size)
            else:
                mask = tf.cast(mask, step.unweighted_loss.dtype)
                output_gradients.append(mask / weighting.global_sum(tf.reduce_sum(mask)))
        if step.sample_weight is not None:
            output_gradients = [g * tf.cast(step.sample_weight, g.dtype)
                                for g in output_gradients]
        return targets, output_gradients

    def _update_training_metrics(self, step: TrainingStep, loss, weights) -> None:
        batch = tf.shape(step.y)[0]
        self.loss_tracker.update_state(loss * replica_count(), sample_weight=batch)
        self.accuracy_tracker.update_state(step.y, step.logits_clean)
        self.robust_accuracy_tracker.update_state(step.y, step.logits_adv)
        total = weighting.global_batch_size(weights)
        mean = weighting.global_sum(tf.reduce_sum(weights)) / total
        # Two passes (deviations from the global mean), not E[w²] − E[w]², which cancels
        # catastrophically when the weights are all close to their mean.
        variance = weighting.global_sum(tf.reduce_sum(tf.square(weights - mean))) / total
        self.mean_weight_tracker.update_state(mean)
        self.weight_std_tracker.update_state(tf.sqrt(variance))
        for metric in self.extra_metrics:
            metric.update_state(step.y, step.logits_clean)

    def _logs(self, names=None) -> dict:
        logs = {
            metric.name: metric.result()
            for metric in self.metrics
            if names is None or metric.name in names
        }
        if replicas.spans_workers():
            logs = _compat.multi_worker_step_logs(logs)
        return logs

    def test_step(self, data):
        """Clean and robust accuracy under the model's attack; ``loss`` is the method's own.

        Robust accuracy: the model's attack with its own cross-entropy objective (the same
        for every method). ``loss`` (``val_loss`` in ``fit``): ``validation_losses``.
        """
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, y, sample_weight = self._check_batch(x, y, sample_weight, training=False)
        y = _to_labels(y, self.num_classes)
        logits_clean = self.classifier(x, training=False)
        x_adv = tf.stop_gradient(
            self.attack.perturb(self.classifier_fn(training=False), x, y,
                                seed=self.attack_seed(self.eval_seed))
        )
        logits_adv = self.classifier(x_adv, training=False)
        per_sample = self.validation_losses(x, y, logits_clean, x_adv, logits_adv)
        if sample_weight is not None:
            per_sample = per_sample * tf.cast(tf.reshape(sample_weight, [-1]), tf.float32)
        self.loss_tracker.update_state(tf.reduce_mean(per_sample),
                                       sample_weight=tf.shape(y)[0])
        self.accuracy_tracker.update_state(y, logits_clean)
        self.robust_accuracy_tracker.update_state(y, logits_adv)
        for metric in self.extra_metrics:
            metric.update_state(y, logits_clean)
        return self._logs(
            {"loss", "accuracy", "robust_accuracy", *(m.name for m in self.extra_metrics)}
        )

    def validation_losses(self, x, y, logits_clean, x_adv, logits_adv):
        """Per-sample evaluation loss: the method's training objective with uniform weights.

        ``sample_losses`` (weighted plus unweighted part) in inference mode, on adversarial
        examples of the method's own training attack objective: for a cross-entropy attack
        (PGD-AT, MART, GAIRAT, WMMR, MAIL-AT, MWAT) the evaluation attack's ``x_adv``; for
        TRADES's KL attack (TRADES, MAIL-TRADES, BiLAW-TRADES) a second attack maximising
        the KL from ``x + 0.001 N(0, 1)``, at full strength, with a stateless seed derived
        from the evaluation seed (which it does not advance, so robust accuracy is
        unchanged). Sample weights (learned or heuristic) are left out: they are a training
        device, and uniform weights compare across methods.

        Args:
            x: Clean inputs.
            y: Integer labels, (n,).
            logits_clean: Inference-mode logits on ``x``.
            x_adv: The evaluation attack's adversarial inputs (cross-entropy objective).
            logits_adv: Inference-mode logits on ``x_adv``.

        Returns:
            Float tensor of shape (n,).
        """
        if self.attack_loss(x, y, logits_clean) is not None or self.objective.attack_init:
            state = tf.cast(tf.convert_to_tensor(self.eval_seed.state) % (2**31 - 1), tf.int32)
            seed = tf.random.experimental.stateless_fold_in(state, 0x5EED + replicas.replica_id())
            attack = self.attack
            if self.objective.attack_init is not None:
                attack = attack.with_init(self.objective.attack_init)
            x_adv = tf.stop_gradient(attack.perturb(
                self.classifier_fn(training=False), x, y, seed=seed,
                loss_fn=self.attack_loss(x, y, logits_clean)))
            logits_adv = self.classifier(x_adv, training=False)
        step = TrainingStep(x=x, y=y, x_adv=x_adv, logits_clean=logits_clean,
                            logits_adv=logits_adv, model=self)
        if self.needs_natural_logits:
            step.logits_natural = logits_clean
        weighted, unweighted = self.sample_losses(step)
        return weighted if unweighted is None else weighted + unweighted

    # ------------------------------------------------------ fit / evaluate glue
    def _validate_data(self, x, y) -> None:
        """Eager checks of user data: all of it for arrays, the first batch of a dataset."""
        value_range = self.attack.value_range
        if isinstance(x, tf.data.Dataset):
            for batch in x.take(1):
                bx, by, _ = keras.utils.unpack_x_y_sample_weight(batch)
                if by is None:
                    raise ValueError("The dataset must yield (x, y) batches; got x only.")
                self._validate_arrays(bx, by, value_range, "x (first dataset batch)")
            return
        if isinstance(x, np.ndarray | tf.Tensor) and y is not None:
            self._validate_arrays(x, y, value_range, "x")

    def _validate_arrays(self, x, y, value_range, name) -> None:
        x = validation.check_inputs(np.asarray(x), value_range, name=name)
        if tuple(x.shape[1:]) != tuple(self.input_spec_shape):
            raise ValueError(
                f"`{name}` has sample shape {tuple(x.shape[1:])}, but the classifier expects "
                f"{tuple(self.input_spec_shape)}."
            )
        validation.check_labels(np.asarray(y), self.num_classes, name="y",
                                batch_size=x.shape[0])

    def fit(self, x=None, y=None, *args, callbacks=None, **kwargs):
        self._validate_data(x, y)
        validation_data = kwargs.get("validation_data")
        if isinstance(validation_data, tuple | list) and len(validation_data) >= 2:
            self._validate_arrays(validation_data[0], validation_data[1],
                                  self.attack.value_range, "validation_data x")
        elif isinstance(validation_data, tf.data.Dataset):
            self._validate_data(validation_data, None)
        callbacks = list(callbacks or []) + [_EpochCounter(self)]
        if isinstance(x, tf.data.Dataset) and not args:
            # A dataset brings its own order: Keras ignores `shuffle` for it, and warns
            # about its default True on every fit.
            kwargs.setdefault("shuffle", False)
        x = self._checked_dataset(x, "training")
        if isinstance(validation_data, tf.data.Dataset):
            kwargs["validation_data"] = self._checked_dataset(validation_data, "validation")
        with _readable_batch_errors():
            return super().fit(x, y, *args, callbacks=callbacks, **kwargs)

    def _checked_dataset(self, data, kind: str):
        """Under XLA (which compiles the in-graph asserts away), a ``tf.data.Dataset`` with
        each batch checked in its pipeline; ``data`` unchanged otherwise."""
        if not (self.checks_batches and self.jit_compile is True
                and isinstance(data, tf.data.Dataset)):
            return data

        def check(index, batch):
            bx, by, bw = keras.utils.unpack_x_y_sample_weight(batch)
            if by is None:
                return batch
            bx, by, bw = validation.check_batch_in_graph(
                bx, by, bw, num_classes=self.num_classes, value_range=self.attack.value_range,
                where=lambda: tf.strings.format(f"{kind} dataset batch {{}}", index + 1))
            return keras.utils.pack_x_y_sample_weight(bx, by, bw)

        return data.enumerate().map(check)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._validate_data(x, y)
        x = self._checked_dataset(x, "evaluation")
        with _readable_batch_errors():
            return super().evaluate(x, y, *args, **kwargs)

    # ---------------------------------------------------------- serialisation
    def get_config(self) -> dict:
        config = {
            "name": self.name,
            "classifier": keras.saving.serialize_keras_object(self.classifier),
            "attack": keras.saving.serialize_keras_object(self.attack),
            "reweight_start_epoch": self.reweight_start_epoch,
            "seed": self.seed,
        }
        if not self.preset:
            config["objective"] = keras.saving.serialize_keras_object(self.objective)
            config["weighting"] = keras.saving.serialize_keras_object(self.weighting)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["classifier"] = keras.saving.deserialize_keras_object(
            config["classifier"], custom_objects=custom_objects
        )
        config["attack"] = keras.saving.deserialize_keras_object(
            config["attack"], custom_objects=custom_objects
        )
        for key, value in list(config.items()):
            if isinstance(value, dict) and "class_name" in value and key not in (
                "classifier", "attack"
            ):
                config[key] = keras.saving.deserialize_keras_object(
                    value, custom_objects=custom_objects
                )
        return cls(**config)
