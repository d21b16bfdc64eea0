"""Training methods: one shared train_step; a method is an objective plus a weighting."""

from keras_mwat import registry
from keras_mwat.methods.base import AdversarialTrainingModel, TrainingStep
from keras_mwat.methods.gairat import GAIRATModel
from keras_mwat.methods.mail import MAILModel
from keras_mwat.methods.mart import MARTModel
from keras_mwat.methods.mwat import MWATModel
from keras_mwat.methods.mwat_nonparametric import MWATNonParametricModel
from keras_mwat.methods.mwat_trades import MWATTRADESModel
from keras_mwat.methods.mwn import MWNModel
from keras_mwat.methods.pgd_at import PGDATModel
from keras_mwat.methods.standard import StandardModel
from keras_mwat.methods.trades import TRADESModel
from keras_mwat.methods.wmmr import WMMRModel

#: Command-line and ``compare`` names of the methods (registered in ``keras_mwat.registry``).
METHODS = {name: registry.method_class(name) for name in registry.METHOD_CLASSES}

__all__ = [
    "METHODS",
    "AdversarialTrainingModel",
    "GAIRATModel",
    "MAILModel",
    "MARTModel",
    "MWATModel",
    "MWATNonParametricModel",
    "MWATTRADESModel",
    "MWNModel",
    "PGDATModel",
    "StandardModel",
    "TRADESModel",
    "TrainingStep",
    "WMMRModel",
]
