"""Training methods: one shared train_step, each method a loss, an attack objective and weights."""

from keras_mwat.methods.base import AdversarialTrainingModel, TrainingStep
from keras_mwat.methods.mwat import MWATModel
from keras_mwat.methods.pgd_at import PGDATModel

__all__ = ["AdversarialTrainingModel", "MWATModel", "PGDATModel", "TrainingStep"]
