"""keras-mwat: learned margin-based sample reweighting for adversarial training in Keras.

Example:
```python
import keras, keras_mwat as km
data = km.data.load_embedded()
model = km.MWATModel(km.zoo.small_cnn(), attack=km.attacks.PGD(eps=0.3, step_size=0.075), seed=0)
model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
model.fit(data.train_dataset(), validation_data=data.validation_dataset(), epochs=2)
model.evaluate(data.test_dataset(), return_dict=True)
```
"""

from keras_mwat import (
    attacks,
    callbacks,
    data,
    evaluation,
    losses,
    margins,
    recipes,
    training_mode,
    tuning,
    validation,
    weighting,
    zoo,
)
from keras_mwat.evaluation import GradientMaskingWarning, RobustnessReport, evaluate_robustness
from keras_mwat.export import export_classifier
from keras_mwat.methods import (
    METHODS,
    AdversarialTrainingModel,
    GAIRATModel,
    MAILModel,
    MARTModel,
    MWATModel,
    MWATNonParametricModel,
    MWATTRADESModel,
    MWNModel,
    PGDATModel,
    StandardModel,
    TRADESModel,
    WMMRModel,
)
from keras_mwat.weight_net import WeightNetwork

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "AdversarialTrainingModel",
    "GAIRATModel",
    "GradientMaskingWarning",
    "MAILModel",
    "MARTModel",
    "MWATModel",
    "MWATNonParametricModel",
    "MWATTRADESModel",
    "MWNModel",
    "PGDATModel",
    "RobustnessReport",
    "StandardModel",
    "TRADESModel",
    "WMMRModel",
    "WeightNetwork",
    "attacks",
    "export_classifier",
    "callbacks",
    "data",
    "evaluate_robustness",
    "evaluation",
    "losses",
    "margins",
    "recipes",
    "training_mode",
    "tuning",
    "validation",
    "weighting",
    "zoo",
]
