"""Small models and data shared by the method tests."""

import keras
import numpy as np

import keras_mwat as km


def make_cnn(batch_norm=False, seed=0):
    keras.utils.set_random_seed(seed)
    return km.zoo.small_cnn(input_shape=(28, 28, 1), num_classes=10, width=4,
                            batch_norm=batch_norm)


def deterministic_attack(steps=2):
    return km.attacks.PGD(eps=0.3, step_size=0.1, num_steps=steps, random_start=False)


def clone(model):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def weights_of(model):
    return [np.array(w) for w in model.get_weights()]


def recorded_step(model, x, y):
    """The ``TrainingStep`` that ``train_step`` builds before its meta update, for tests.

    Attacks ``x``, records the per-sample losses of a training-mode forward on a persistent
    tape watching the classifier's values, and returns the step (``step.tape`` set).
    """
    import tensorflow as tf

    from keras_mwat.methods.base import TrainingStep

    classifier = model.classifier
    theta = [tf.convert_to_tensor(v) for v in classifier.trainable_variables]
    non_trainable = [tf.convert_to_tensor(v) for v in classifier.non_trainable_variables]
    x_adv = model.attack.perturb(model.classifier_fn(), x, y)
    step = TrainingStep(x=x, y=y, x_adv=x_adv, logits_clean=classifier(x), theta=theta,
                        non_trainable=non_trainable)
    with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
        tape.watch(theta)
        step.logits_adv, _ = model.forward(theta, non_trainable, x_adv)
        if model.needs_natural_logits:
            step.logits_natural, _ = model.forward(theta, non_trainable, x)
        step.weighted_loss, step.unweighted_loss = model.sample_losses(step)
    step.tape = tape
    return step


def meta_set(n=16):
    """A small held-out meta set (embedded validation digits) for MWAT and MWN."""
    data = _embedded()
    return data.x_val[:n], data.y_val[:n]


def method_kwargs(model_class):
    """Constructor arguments a method needs besides the classifier: the meta set of the
    bilevel methods (their paper's held-out meta set), nothing for the others."""
    if isinstance(model_class, str):
        model_class = km.METHODS[model_class]
    return {"meta_data": meta_set()} if issubclass(model_class, km.MWATModel) else {}


_CACHE = {}


def _embedded():
    if "data" not in _CACHE:
        _CACHE["data"] = km.data.load_embedded()
    return _CACHE["data"]
