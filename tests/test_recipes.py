"""Tests of keras_mwat.recipes: the paper's protocol as a recipe."""

import dataclasses
import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mwat as km
from keras_mwat import recipes

F32 = np.float32


# Named recipes and validation.


def test_paper_recipe_holds_the_papers_settings():
    paper = recipes.get("paper")
    assert (paper.epochs, paper.batch_size, paper.meta_batch_size) == (100, 128, 128)
    assert (paper.learning_rate, paper.lr_drop_epochs, paper.lr_drop_factor) == (0.1, (30, 60), 0.1)
    assert (paper.attack_steps, paper.eval_attack_steps, paper.attack_step_fraction) == (10, 20, 0.25)
    assert (paper.momentum, paper.weight_decay, paper.augment) == (0.9, 5e-4, "none")
    cifar = recipes.get("paper-cifar")
    assert cifar.augment == "crop_flip" and cifar.crop_padding == 4
    assert cifar.padding_mode == "constant"
    # The CIFAR recipe differs from the paper's only by its name and augmentation.
    assert dataclasses.replace(cifar, name="paper", augment="none") == paper
    assert set(recipes.RECIPES) == {"paper", "paper-cifar"}


def test_get_returns_a_recipe_as_is_and_names_a_bad_identifier():
    recipe = recipes.Recipe("mine", epochs=5)
    assert recipes.get(recipe) is recipe
    with pytest.raises(ValueError, match="'papr'"):
        recipes.get("papr")
    with pytest.raises(ValueError, match="identifier"):
        recipes.get(None)


def test_recipe_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipes.get("paper").epochs = 3


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"epochs": 0}, "epochs"),
        ({"learning_rate": -0.1}, "learning_rate"),
        ({"lr_drop_epochs": (60, 30)}, "lr_drop_epochs"),
        ({"lr_drop_epochs": (0,)}, "lr_drop_epochs"),
        ({"lr_drop_epochs": 30}, "lr_drop_epochs"),
        ({"lr_drop_factor": 10.0}, "lr_drop_factor"),
        ({"momentum": 1.5}, "momentum"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"sgd_form": "torch"}, "sgd_form"),
        ({"augment": "flip"}, "augment"),
        ({"padding_mode": "edge"}, "padding_mode"),
        ({"nesterov": 1}, "nesterov"),
        ({"attack_step_fraction": 0.0}, "attack_step_fraction"),
    ],
)
def test_bad_fields_raise_naming_the_field(changes, message):
    with pytest.raises((ValueError, TypeError), match=message):
        recipes.get("paper").replace(**changes)


# Learning-rate schedule.


@pytest.mark.parametrize("steps_per_epoch", [1, 7, 391])
def test_schedule_drops_exactly_at_the_epoch_boundaries(steps_per_epoch):
    optimizer = recipes.get("paper").optimizer(steps_per_epoch)
    expected = {
        0: 0.1,
        30 * steps_per_epoch - 1: 0.1,   # last step of epoch 29
        30 * steps_per_epoch: 0.01,      # first step of epoch 30
        60 * steps_per_epoch - 1: 0.01,
        60 * steps_per_epoch: 0.001,
        100 * steps_per_epoch - 1: 0.001,
    }
    for step, lr in expected.items():
        optimizer.iterations.assign(step)
        assert F32(optimizer.learning_rate) == F32(lr), (step, lr)


def test_learning_rate_at_matches_the_schedule_at_each_epoch():
    recipe = recipes.get("paper")
    schedule = recipe.learning_rate_schedule(steps_per_epoch=3)
    for epoch in range(recipe.epochs):
        for step in range(3 * epoch, 3 * epoch + 3):
            assert F32(schedule(step)) == F32(recipe.learning_rate_at(epoch))
    assert F32(recipe.learning_rate_at(29)) == F32(0.1)
    assert F32(recipe.learning_rate_at(30)) == F32(0.01)
    assert F32(recipe.learning_rate_at(60)) == F32(0.001)


def test_repeated_drop_epoch_divides_twice_and_no_drop_is_constant():
    recipe = recipes.Recipe("r", epochs=4, lr_drop_epochs=(1, 1))
    schedule = recipe.learning_rate_schedule(steps_per_epoch=2)
    assert [F32(schedule(s)) for s in range(4)] == [F32(0.1)] * 2 + [F32(0.001)] * 2
    constant = recipes.Recipe("c", lr_drop_epochs=())
    assert constant.learning_rate_schedule(5) == 0.1
    assert F32(constant.optimizer(5).learning_rate) == F32(0.1)


def test_scaled_keeps_the_schedule_shape():
    paper = recipes.get("paper")
    ten = paper.scaled(epochs=10)
    assert (ten.epochs, ten.lr_drop_epochs) == (10, (3, 6))
    assert paper.scaled(epochs=3).lr_drop_epochs == (1, 2)
    assert paper.scaled(epochs=5).lr_drop_epochs == (2, 3)   # 1.5 rounds up
    assert paper.scaled(epochs=200).lr_drop_epochs == (60, 120)
    assert paper.scaled(epochs=1).lr_drop_epochs == (1, 1)   # never epoch 0
    assert paper.scaled(epochs=100) == paper
    # Only the epochs change; the original is untouched.
    assert dataclasses.replace(ten, epochs=100, lr_drop_epochs=(30, 60)) == paper
    assert paper.epochs == 100
    with pytest.raises(ValueError, match="epochs"):
        paper.scaled(epochs=0)


# Optimizers: weight decay and momentum forms.


def _run(optimizer, theta0, grads):
    """Applies the gradients in turn to one float64 variable; returns its values."""
    variable = keras.Variable(np.array(theta0, dtype=np.float64))
    values = []
    for grad in grads:
        optimizer.apply_gradients([(tf.constant(grad, tf.float64), variable)])
        values.append(np.array(variable.numpy()))
    return values


def _torch_sgd(theta0, grads, lrs, momentum, weight_decay, nesterov=False):
    """torch.optim.SGD's documented update (dampening 0), in NumPy."""
    theta = np.array(theta0, dtype=np.float64)
    buf = np.zeros_like(theta)
    values = []
    for grad, lr in zip(grads, lrs, strict=True):
        g = np.asarray(grad) + weight_decay * theta
        buf = momentum * buf + g
        theta = theta - lr * ((g + momentum * buf) if nesterov else buf)
        values.append(theta.copy())
    return values


def test_keras_form_one_plain_sgd_step_matches_the_closed_form():
    theta0, grad, lr, wd = np.array([1.5, -2.0, 0.25]), np.array([0.3, 0.1, -0.7]), 0.1, 5e-4
    recipe = recipes.Recipe("k", momentum=0.0, weight_decay=wd, sgd_form="keras")
    optimizer = recipe.optimizer(steps_per_epoch=10)
    assert type(optimizer) is keras.optimizers.SGD
    (theta1,) = _run(optimizer, theta0, [grad])
    # Keras's decoupled decay: theta -= theta * wd * lr, then theta -= lr * grad.
    np.testing.assert_allclose(theta1, theta0 - theta0 * wd * lr - lr * grad, rtol=1e-7)


def test_plain_sgd_forms_agree_exactly():
    rng = np.random.default_rng(0)
    theta0, grads = rng.normal(size=4), rng.normal(size=(5, 4))
    values = {}
    for form in recipes.SGD_FORMS:
        recipe = recipes.Recipe(form, momentum=0.0, weight_decay=0.01, sgd_form=form,
                                lr_drop_epochs=(1,))
        values[form] = _run(recipe.optimizer(steps_per_epoch=2), theta0, grads)
    np.testing.assert_allclose(values["pytorch"], values["keras"], rtol=1e-7)


@pytest.mark.parametrize("nesterov", [False, True])
def test_pytorch_form_matches_torch_sgd_across_a_learning_rate_drop(nesterov):
    rng = np.random.default_rng(1)
    theta0, grads = rng.normal(size=3), rng.normal(size=(6, 3))
    recipe = recipes.Recipe("t", epochs=3, lr_drop_epochs=(1, 2), weight_decay=0.05,
                            nesterov=nesterov)
    optimizer = recipe.optimizer(steps_per_epoch=2)
    assert isinstance(optimizer, recipes.TorchSGD)
    assert isinstance(optimizer, keras.optimizers.SGD)
    lrs = [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    expected = _torch_sgd(theta0, grads, lrs, momentum=0.9, weight_decay=0.05, nesterov=nesterov)
    np.testing.assert_allclose(_run(optimizer, theta0, grads), expected, rtol=1e-6)


def test_with_momentum_pytorch_decay_is_about_one_over_one_minus_mu_stronger():
    # With zero gradients only the decay acts. Keras: theta *= 1 - c per step, c = lr * wd.
    # PyTorch: (theta, buf) follow a linear recursion whose slow eigenvalue solves
    # (lam - 1)(lam - mu) = -c lam, so lam = 1 - c / (1 - mu) + O(c^2): a decay about
    # 1 / (1 - mu) = 10 times stronger.
    steps, lr, wd, mu = 300, 0.1, 1e-3, 0.9
    c = float(F32(lr)) * wd   # the optimizer's learning rate is float32
    zeros = np.zeros((steps, 1))
    rate = {}
    for form in recipes.SGD_FORMS:
        recipe = recipes.Recipe(form, momentum=mu, weight_decay=wd, sgd_form=form,
                                lr_drop_epochs=(), learning_rate=lr)
        values = _run(recipe.optimizer(steps_per_epoch=1), [1.0], zeros)
        rate[form] = values[-1][0] / values[-2][0]   # per-step factor, transients gone
    b = 1 + mu - c
    lam = (b + np.sqrt(b * b - 4 * mu)) / 2
    np.testing.assert_allclose(rate["keras"], 1 - c, rtol=1e-9)  # float32 constants
    np.testing.assert_allclose(rate["pytorch"], lam, rtol=1e-9)
    ratio = np.log(rate["pytorch"]) / np.log(rate["keras"])
    assert 9.9 < ratio < 10.2, ratio


def test_torch_sgd_serialises_with_its_l2_coefficient():
    optimizer = recipes.get("paper").optimizer(steps_per_epoch=4)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(restored) is recipes.TorchSGD
    assert restored.l2_weight_decay == 5e-4 and restored.weight_decay is None
    assert (restored.momentum, restored.nesterov) == (0.9, False)
    restored.iterations.assign(4 * 30)
    assert F32(restored.learning_rate) == F32(0.01)
    with pytest.raises(ValueError, match="weight_decay"):
        recipes.TorchSGD(0.1, weight_decay=-1.0)


# Attacks.


def test_training_and_evaluation_attacks():
    recipe = recipes.get("paper")
    attack = recipe.attack(0.1, norm="l2", value_range=(0.0, 1.0), seed=3)
    assert isinstance(attack, km.attacks.PGD)
    assert (attack.eps, attack.step_size, attack.num_steps) == (0.1, 0.025, 10)
    assert (attack.random_start, attack.norm, attack.seed) == (True, "l2", 3)
    evaluation = recipe.eval_attack(8 / 255, num_restarts=2)
    assert (evaluation.step_size, evaluation.num_steps) == (2 / 255, 20)
    assert (evaluation.random_start, evaluation.num_restarts, evaluation.norm) == (True, 2, "linf")
    assert recipe.replace(eval_random_start=False).eval_attack(0.1).random_start is False
    with pytest.raises(ValueError, match="eps"):
        recipe.attack(0.0)


# Augmentation.


def _shift(image, dy, dx):
    """``image`` (H, W, C) moved by (dy, dx) pixels, zeros entering at the border."""
    height, width = image.shape[:2]
    out = np.zeros_like(image)
    out[max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] = image[
        max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)]
    return out


def test_crop_flip_is_a_shift_of_the_zero_padded_image_maybe_mirrored():
    image = (np.arange(1, 37, dtype=np.float32) / 36).reshape(6, 6, 1)
    batch = np.repeat(image[None], 600, axis=0)
    out = recipes.crop_flip(batch, tf.constant([4, 2]), padding=2).numpy()
    assert out.shape == batch.shape and out.dtype == np.float32
    candidates = {
        (dy, dx, flip): (_shift(image, dy, dx)[:, ::-1] if flip else _shift(image, dy, dx))
        for dy, dx, flip in itertools.product(range(-2, 3), range(-2, 3), (False, True))
    }
    seen = []
    for augmented in out:
        matches = [key for key, cand in candidates.items() if np.array_equal(augmented, cand)]
        assert len(matches) == 1  # the pixel values are distinct, so the match is unique
        seen.append(matches[0])
    # Every one of the 5 x 5 offsets occurs, and about half the images are mirrored.
    assert {(dy, dx) for dy, dx, _ in seen} == set(itertools.product(range(-2, 3), repeat=2))
    flipped = np.mean([flip for _, _, flip in seen])
    assert 0.42 < flipped < 0.58, flipped


def test_crop_flip_is_deterministic_in_its_seed_and_handles_one_image():
    images = tf.random.stateless_uniform((8, 32, 32, 3), seed=[0, 0])
    first = recipes.crop_flip(images, tf.constant([1, 2]))
    np.testing.assert_array_equal(first, recipes.crop_flip(images, tf.constant([1, 2])))
    assert not np.array_equal(first, recipes.crop_flip(images, tf.constant([1, 3])))
    single = recipes.crop_flip(images[0], tf.constant([1, 2]))
    assert single.shape == (32, 32, 3)


def test_reflect_padding_takes_every_pixel_from_the_image():
    image = (np.arange(1, 65, dtype=np.float32) / 64).reshape(1, 8, 8, 1)
    batch = np.repeat(image, 50, axis=0)
    out = recipes.crop_flip(batch, tf.constant([0, 5]), padding=3, mode="reflect").numpy()
    assert out.shape == batch.shape
    assert out.min() > 0  # no zero enters
    assert set(np.unique(out)) <= set(np.unique(image))


@pytest.mark.parametrize("batched", [False, True])
def test_prepare_augments_x_only_keeping_shapes_range_and_order(batched):
    x = tf.random.stateless_uniform((12, 32, 32, 3), seed=[1, 1])
    y = tf.range(12, dtype=tf.int64)
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if batched:
        dataset = dataset.batch(5)
    recipe = recipes.get("paper-cifar")
    prepared = recipe.prepare(dataset, seed=7)
    assert prepared.element_spec == dataset.element_spec
    assert int(prepared.cardinality()) == int(dataset.cardinality())
    passes = [list(prepared.as_numpy_iterator()) for _ in range(2)]   # two epochs
    x_out = np.concatenate([np.reshape(a, (-1, 32, 32, 3)) for a, _ in passes[0]])
    y_out = np.concatenate([np.reshape(b, (-1,)) for _, b in passes[0]])
    np.testing.assert_array_equal(y_out, y)
    assert x_out.shape == x.shape and 0.0 <= x_out.min() and x_out.max() <= 1.0
    assert not np.array_equal(x_out, x)
    # Reproducible from the seed; new draws each epoch (each pass over the dataset).
    again = list(recipe.prepare(dataset, seed=7).as_numpy_iterator())
    for (a, _), (b, _) in zip(passes[0], again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(
        np.concatenate([a for a, _ in passes[0]]), np.concatenate([a for a, _ in passes[1]]))


def test_prepare_is_the_identity_without_augmentation_and_checks_its_input():
    dataset = tf.data.Dataset.from_tensor_slices((np.zeros((4, 28, 28, 1), np.float32), np.arange(4)))
    assert recipes.get("paper").prepare(dataset) is dataset
    with pytest.raises(TypeError, match="dataset"):
        recipes.get("paper-cifar").prepare((np.zeros((4, 8, 8, 1)), np.arange(4)))
    flat = tf.data.Dataset.from_tensor_slices(np.zeros((4, 10), np.float32))
    with pytest.raises(ValueError, match="element_spec"):
        recipes.get("paper-cifar").prepare(flat)


# Training with a recipe.


class _LearningRates(keras.callbacks.Callback):
    """Records the learning rate each training step uses."""

    def __init__(self):
        super().__init__()
        self.used = []

    def on_train_batch_begin(self, batch, logs=None):
        self.used.append(F32(self.model.optimizer.learning_rate))


def test_pgdat_trains_with_the_recipe_schedule(tmp_path):
    recipe = recipes.get("paper").scaled(epochs=3)   # drops at epochs 1 and 2
    data = km.data.load_embedded().subset(train=32, validation=8, test=8, seed=0)
    train = data.train_dataset(batch_size=16, seed=0)
    steps_per_epoch = len(train)
    assert steps_per_epoch == 2
    model = km.PGDATModel(km.zoo.small_cnn(), attack=recipe.attack(0.1, seed=0), seed=0)
    model.compile(optimizer=recipe.optimizer(steps_per_epoch))
    before = [w.copy() for w in model.classifier.get_weights()]
    rates = _LearningRates()
    history = model.fit(recipe.prepare(train), epochs=recipe.epochs, callbacks=[rates], verbose=0)
    assert rates.used == [F32(0.1)] * 2 + [F32(0.01)] * 2 + [F32(0.001)] * 2
    assert int(model.optimizer.iterations) == 6
    assert F32(model.optimizer.learning_rate) == F32(recipe.learning_rate_at(2)) == F32(0.001)
    assert all(np.isfinite(history.history["loss"]))
    after = model.classifier.get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    # The compiled optimizer (class, L2 coefficient, schedule) survives a .keras round trip.
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.optimizer) is recipes.TorchSGD
    assert loaded.optimizer.l2_weight_decay == 5e-4
    assert F32(loaded.optimizer.learning_rate) == F32(0.001)
