"""Keras callbacks for adversarial training."""

from __future__ import annotations

import json
from pathlib import Path

import keras

from keras_mwat.validation import check_int


class EpsilonWarmup(keras.callbacks.Callback):
    """Ramps the training attack's radius linearly from 0 to its ``eps``.

    Adversarial training at a large radius from scratch can stall at chance level (MNIST at
    eps 0.3 is the classic case); a short linear warm-up of the radius avoids it. The ramp
    scales the attack's eps and step size together, batch by batch, through the model's
    ``attack_strength`` variable: training attacks with ``attack.scaled(attack_strength)``, the
    same attack on a smaller ball. Evaluation (``test_step``) always uses the full radius.

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
                self._state_path().write_text(json.dumps(
                    {"epoch": epoch, "robust": robust, "clean": clean}))

    def _state_path(self) -> Path:
        return Path(str(self.filepath) + ".best.json")

    def on_train_begin(self, logs=None):
        """With ``filepath``: a run resumed by ``BackupAndRestore`` continues from the best
        checkpoint of its earlier part (its epoch, accuracy and weights)."""
        if self.filepath is None or self.best_weights is not None:
            return
        state = self._state_path()
        if state.exists() and Path(self.filepath).exists():
            best = json.loads(state.read_text())
            self.best_epoch, self.best_robust_accuracy = best["epoch"], best["robust"]
            self.best_weights = keras.models.load_model(self.filepath,
                                                        compile=False).get_weights()

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class WeightTensorBoard(keras.callbacks.Callback):
    """Writes the method's sample weights to TensorBoard: what the reweighting does.

    Every ``every`` epochs, on a fixed batch ``(x, y)`` (e.g. validation data), it logs:
    histograms of the normalised weights (``weights``) and of the Definition 2.2 margins
    on the adversarial examples (``margins``); the mean weight of each class
    (``class_mean_weight/<k>``); and the learned weight-vs-margin curve as a Markdown table
    of the mean weight in margin bins (``weight_vs_margin``), also kept in ``self.curves``.
    Works with every method (uniform methods show weight 1); it trains nothing. Needs
    tensorboard: ``pip install 'keras-mwat[tensorboard]'`` (or ``[all]``).

    Args:
        log_dir: TensorBoard log directory (a ``weights`` subfolder is written).
        x: Inputs to inspect (a few hundred samples are plenty).
        y: Their integer labels.
        every: Log every this many epochs.
        bins: Number of margin bins of the curve, over [-1, 1].

    Example:
    ```python
    model.fit(train_ds, epochs=5, callbacks=[keras_mwat.callbacks.WeightTensorBoard(
        "runs/tb", data.x_val[:512], data.y_val[:512])])
    # tensorboard --logdir runs/tb
    ```
    """

    def __init__(self, log_dir, x, y, every: int = 1, bins: int = 10):
        super().__init__()
        import os

        import tensorflow as tf

        from keras_mwat._optional import require

        # tf.summary's histogram, scalar and text ops live in tensorboard (no TF dependency).
        require("tensorboard", "keras_mwat.callbacks.WeightTensorBoard")

        self.writer = tf.summary.create_file_writer(os.path.join(str(log_dir), "weights"))
        self.x = x
        self.y = y
        self.every = check_int(every, "every", minimum=1)
        self.bins = check_int(bins, "bins", minimum=1)
        self.curves = []

    def curve(self, margin, weight) -> list[tuple[float, float, float, int]]:
        """(bin low, bin high, mean weight, count) over margin bins in [-1, 1]."""
        import numpy as np

        edges = np.linspace(-1.0, 1.0, self.bins + 1)
        index = np.clip(np.digitize(margin, edges) - 1, 0, self.bins - 1)
        rows = []
        for b in range(self.bins):
            chosen = index == b
            if chosen.any():
                rows.append((float(edges[b]), float(edges[b + 1]),
                             float(weight[chosen].mean()), int(chosen.sum())))
        return rows

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        import numpy as np
        import tensorflow as tf

        result = self.model.inspect_weights(self.x, self.y)
        rows = self.curve(result["margin"], result["weight"])
        self.curves.append({"epoch": epoch, "curve": rows})
        table = ["| margin bin | mean weight | samples |", "|---|---|---|"] + [
            f"| [{low:.1f}, {high:.1f}) | {mean:.3f} | {count} |"
            for low, high, mean, count in rows]
        with self.writer.as_default(step=epoch):
            tf.summary.histogram("weights", result["weight"])
            tf.summary.histogram("margins", result["margin"])
            for label in np.unique(result["y"]):
                tf.summary.scalar(f"class_mean_weight/{int(label)}",
                                  float(result["weight"][result["y"] == label].mean()))
            tf.summary.text("weight_vs_margin", "\n".join(table))
        self.writer.flush()


class TrainingCollapseWarning(UserWarning):
    """Warning category of ``CollapseMonitor``: training accuracy stuck at chance level."""


class CollapseMonitor(keras.callbacks.Callback):
    """Warns once when accuracy sits at chance level after the first epochs: a collapse.

    Adversarial training from the full radius with too high a learning rate often never
    leaves chance level (accuracy about ``1 / num_classes``), and nothing else says so.
    At the end of each epoch from epoch ``patience`` on, if a monitored accuracy (clean
    training ``accuracy``, and ``val_accuracy`` when validating) has been at most
    ``1 / num_classes + tolerance`` for the last ``patience`` epochs, this callback warns
    once (``warnings.warn`` with category ``TrainingCollapseWarning``, and a printed line)
    with the likely cause and the fix. A run that never left chance most often needs an
    ``EpsilonWarmup`` or a lower learning rate; a run that had learned (a monitored accuracy
    once well above chance) and then fell to chance diverged: a lower learning rate, or for
    a reweighting method a later ``reweight_start_epoch``. It changes nothing in training.

    Args:
        patience: Number of consecutive epochs at chance before warning (the earliest
            warning comes after epoch ``patience``, counted from 1).
        tolerance: How far above chance (absolute accuracy) still counts as chance.
        num_classes: Number of classes (default: the model's ``num_classes``).
        monitor: Names of the accuracy logs to watch; absent ones are skipped.

    Attributes:
        message: The warning's text once it fired, else None.
        triggered_epoch: The epoch (from 0) at which it fired, else None.

    Example:
    ```python
    monitor = keras_mwat.callbacks.CollapseMonitor(patience=2)
    model.fit(train_ds, epochs=10, callbacks=[monitor])
    if monitor.message:
        print("collapsed at epoch", monitor.triggered_epoch)
    ```
    """

    def __init__(self, patience: int = 2, tolerance: float = 0.05, num_classes=None,
                 monitor=("accuracy", "val_accuracy")):
        super().__init__()
        from keras_mwat.validation import check_nonnegative

        self.patience = check_int(patience, "patience", minimum=1)
        self.tolerance = check_nonnegative(tolerance, "tolerance")
        self.num_classes = None if num_classes is None else check_int(
            num_classes, "num_classes", minimum=2)
        if isinstance(monitor, str):
            monitor = (monitor,)
        self.monitor = tuple(monitor)
        if not self.monitor:
            raise ValueError(f"`monitor` must name at least one log, got monitor={monitor!r}.")
        self.message = None
        self.triggered_epoch = None
        self._streaks = {}
        self._best = {}

    def _classes(self) -> int:
        if self.num_classes is not None:
            return self.num_classes
        classes = getattr(self._model_or_none(), "num_classes", None)
        if classes is None:
            raise ValueError("CollapseMonitor needs `num_classes=` for a model without a "
                             "`num_classes` attribute.")
        return int(classes)

    def _model_or_none(self):
        try:
            return self.model
        except AttributeError:
            return None

    def _learning_rate(self) -> str:
        optimizer = getattr(self._model_or_none(), "optimizer", None)
        try:
            return f" (learning rate {float(optimizer.learning_rate):g})"
        except (AttributeError, TypeError, ValueError):
            return ""

    def on_train_begin(self, logs=None):
        self._streaks = {}
        self._best = {}

    def on_epoch_end(self, epoch, logs=None):
        if self.message is not None or not logs:
            return
        classes = self._classes()
        chance = 1.0 / classes
        stuck = []
        for name in self.monitor:
            if name not in logs:
                continue
            value = float(logs[name])
            self._best[name] = max(self._best.get(name, value), value)
            at_chance = value <= chance + self.tolerance
            self._streaks[name] = self._streaks.get(name, 0) + 1 if at_chance else 0
            if self._streaks[name] >= self.patience:
                stuck.append(f"{name} {value:.3f}")
        if not stuck:
            return
        self.triggered_epoch = epoch
        learned = {name: best for name, best in self._best.items()
                   if best > chance + 2 * self.tolerance}
        if learned:
            reached = ", ".join(f"{name} {best:.3f}" for name, best in learned.items())
            advice = (f"It had learned ({reached} before), so training diverged: lower the "
                      "learning rate, or for a reweighting method start the reweighting "
                      "later (reweight_start_epoch).")
        else:
            advice = ("Adversarial training from the full eps with this learning rate often "
                      "stays at chance: use km.callbacks.EpsilonWarmup(epochs=3) (CLI: "
                      "--eps-warmup-epochs 3) or a lower learning rate.")
        self.message = (
            f"Training collapse: {', '.join(stuck)} after epoch {epoch + 1} is at chance "
            f"level (1/{classes} = {chance:.3f}) for {self.patience} epochs"
            f"{self._learning_rate()}. {advice}")
        import warnings

        warnings.warn(self.message, TrainingCollapseWarning, stacklevel=2)
        print(self.message)


#: The per-epoch arrays of a ``WeightHistory`` file, each of shape (epochs, n).
WEIGHT_HISTORY_KEYS = ("weight", "weight_clean", "weight_adv", "margin_clean", "margin_adv",
                       "pred_clean", "pred_adv")


class WeightHistory(keras.callbacks.Callback):
    """Records the learned weights of a fixed probe set after every epoch, in an ``.npz``.

    At the end of every ``every``-th epoch (and of the last one) it attacks the probe set
    ``(x, y)`` with the model's training attack (its own random starts, drawn from ``seed``
    and the same every epoch; the model's generators are not touched, so training draws
    the same numbers with or without this callback) and asks the method's weight function
    for three weights per point, each normalised to mean 1 over the probe set (the scale
    of ``model.inspect_weights``):

    * ``weight``: the weight training gives the point (the clean input and its adversarial
      example, as in ``train_step``): what ``inspect_weights`` reports;
    * ``weight_clean``: the weight of the clean input, i.e. the weight function evaluated
      with the clean input standing for both the input and its adversarial example
      (MWAT's margin, MWN's loss, ... all of the clean logits);
    * ``weight_adv``: the same with the adversarial example in both roles.

    For MWAT (the paper's BiLAW) with its default clean margin, ``weight`` equals
    ``weight_clean``; ``weight_adv`` is what its weight network gives the adversarial
    margin. For MWN, whose weights come from the adversarial loss, ``weight`` equals
    ``weight_adv``. During a ``reweight_start_epoch`` warm-up all three are 1, as in
    training. The file also holds the Definition 2.2 margins and the predicted classes of
    the clean and the adversarial inputs.

    The file is rewritten after each recorded epoch; a run resumed by ``BackupAndRestore``
    (same ``filepath``, same probe set) continues it: an epoch recorded again replaces its
    earlier record, the others are kept.

    File contents: ``epoch`` (epochs, 0-based), ``y`` (n,), ``index`` (n,: the ``index``
    given, else ``arange(n)``), and ``WEIGHT_HISTORY_KEYS`` of shape (epochs, n).

    Args:
        x: Probe inputs, shape (n, ...) (a few hundred training points).
        y: Their integer labels, shape (n,).
        filepath: The ``.npz`` file to write.
        every: Record every this many epochs (and after the last epoch).
        index: Optional indices of the probe points in their dataset, stored for reference.
        batch_size: Points attacked at once (the normalisation is over all n).
        seed: Seed of the probe attack's random start.

    Example:
    ```python
    history = keras_mwat.callbacks.WeightHistory(data.x_train[:500], data.y_train[:500],
                                                 "weight_history.npz")
    model.fit(train_ds, epochs=5, callbacks=[history])
    record = numpy.load("weight_history.npz")
    record["weight_adv"].shape      # (5, 500)
    ```
    """

    def __init__(self, x, y, filepath, every: int = 1, index=None, batch_size: int = 256,
                 seed: int = 0):
        super().__init__()
        import numpy as np

        self.x = np.asarray(x)
        self.y = np.asarray(y)
        if self.y.ndim == 2:  # one-hot
            self.y = self.y.argmax(axis=1)
        self.y = self.y.astype(np.int64).reshape(-1)
        if len(self.x) != len(self.y) or len(self.y) == 0:
            raise ValueError(f"`x` and `y` must hold the same number (>= 1) of points, got "
                             f"x of shape {self.x.shape} and y of shape {self.y.shape}.")
        self.filepath = Path(filepath)
        self.every = check_int(every, "every", minimum=1)
        self.index = (np.arange(len(self.y)) if index is None
                      else np.asarray(index, dtype=np.int64).reshape(-1))
        if self.index.shape != self.y.shape:
            raise ValueError(f"`index` must hold one index per point ({len(self.y)}), got "
                             f"shape {self.index.shape}.")
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.seed = check_int(seed, "seed", minimum=0)
        self._generator = None
        self._initial_state = None
        self.records: dict[str, list] = {}

    def _probe_generator(self):
        """A generator of its own, reset to the same state before every record."""
        if self._generator is None:
            self._generator = keras.random.SeedGenerator(self.seed)
            self._initial_state = self._generator.state.numpy().copy()
        self._generator.state.assign(self._initial_state)
        return self._generator

    def _raw_weights(self, step):
        """Unnormalised weights of a step (None for uniform), as ``inspect_weights``."""
        model = self.model
        if model.needs_natural_logits:
            step.logits_natural = step.logits_clean
        step.weighted_loss, step.unweighted_loss = model.sample_losses(step)
        return model.current_weights(step)

    def _batch(self, x, y, generator) -> dict:
        import tensorflow as tf

        from keras_mwat import margins
        from keras_mwat.methods.base import TrainingStep

        model = self.model
        x = tf.convert_to_tensor(x)
        y = tf.convert_to_tensor(y, dtype=tf.int32)
        logits_clean = model.classifier(x, training=False)
        x_adv = tf.stop_gradient(model.training_attack().perturb(
            model.classifier_fn(training=False), x, y, seed=generator,
            loss_fn=model.attack_loss(x, y, logits_clean)))
        logits_adv = model.classifier(x_adv, training=False)
        steps = {
            "weight": TrainingStep(x=x, y=y, x_adv=x_adv, logits_clean=logits_clean,
                                   logits_adv=logits_adv),
            "weight_clean": TrainingStep(x=x, y=y, x_adv=x, logits_clean=logits_clean,
                                         logits_adv=logits_clean),
            "weight_adv": TrainingStep(x=x_adv, y=y, x_adv=x_adv, logits_clean=logits_adv,
                                       logits_adv=logits_adv),
        }
        out = {name: self._raw_weights(step) for name, step in steps.items()}
        out["margin_clean"] = margins.probability_margin(y, logits_clean)
        out["margin_adv"] = margins.probability_margin(y, logits_adv)
        out["pred_clean"] = tf.argmax(logits_clean, axis=1)
        out["pred_adv"] = tf.argmax(logits_adv, axis=1)
        return out

    def weights_now(self) -> dict:
        """The record of the model as it is now: ``WEIGHT_HISTORY_KEYS`` arrays of shape (n,).

        Returns:
            A dict of NumPy arrays (weights normalised to mean 1 over the probe set).

        Example:
        ```python
        history.set_model(model)
        history.weights_now()["weight_adv"]
        ```
        """
        import numpy as np

        from keras_mwat import weighting

        model = self.model
        generator = self._probe_generator()
        parts: dict[str, list] = {}
        for start in range(0, len(self.y), self.batch_size):
            stop = start + self.batch_size
            for key, value in self._batch(self.x[start:stop], self.y[start:stop],
                                          generator).items():
                parts.setdefault(key, []).append(None if value is None else np.asarray(value))
        warm_up = int(model.epoch.numpy()) < getattr(model, "reweight_start_epoch", 0)
        mode = model.weight_normalization_mode()
        mode = "mean" if mode == "sum" else mode  # on the mean-1 scale, as inspect_weights
        record = {}
        for key in WEIGHT_HISTORY_KEYS:
            if key.startswith("weight"):
                if warm_up or any(part is None for part in parts[key]):
                    record[key] = np.ones(len(self.y), np.float32)
                else:
                    raw = np.concatenate(parts[key]).astype(np.float32)
                    record[key] = np.asarray(weighting.normalize(raw, mode))
            else:
                record[key] = np.concatenate(parts[key])
        return record

    def on_train_begin(self, logs=None):
        """Reads an earlier file of this probe set (a resumed run) to continue it."""
        import numpy as np

        self.records = {}
        if not self.filepath.exists():
            return
        with np.load(self.filepath) as saved:
            if not np.array_equal(saved["y"], self.y) or not np.array_equal(saved["index"],
                                                                             self.index):
                raise ValueError(
                    f"WeightHistory: {self.filepath} holds another probe set "
                    f"({len(saved['y'])} points) than this one ({len(self.y)}): pass "
                    "another `filepath` or delete the file.")
            for i, epoch in enumerate(saved["epoch"]):
                self.records[int(epoch)] = {key: saved[key][i] for key in WEIGHT_HISTORY_KEYS}

    def on_epoch_end(self, epoch, logs=None):
        last = self.params.get("epochs") if self.params else None
        if (epoch + 1) % self.every and epoch + 1 != last:
            return
        self.records[int(epoch)] = self.weights_now()
        self._write()

    def _write(self) -> None:
        import os

        import numpy as np

        epochs = sorted(self.records)
        arrays = {key: np.stack([self.records[e][key] for e in epochs])
                  for key in WEIGHT_HISTORY_KEYS}
        self.filepath.parent.mkdir(parents=True, exist_ok=True)
        partial = self.filepath.with_name(self.filepath.name + ".partial.npz")
        np.savez(partial, epoch=np.asarray(epochs, np.int64), y=self.y, index=self.index,
                 **arrays)
        os.replace(partial, self.filepath)
