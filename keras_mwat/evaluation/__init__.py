"""Robustness evaluation: attacks in cascade, masking checks and ``RobustnessReport``.

Example:

```python
import keras_mwat as km

report = km.evaluate_robustness(classifier, (x_test, y_test), eps=0.3, attacks="standard",
                                n=500, seed=0)
print(report)                   # clean, per-attack and worst-case robust accuracy
report.save("robustness.json")  # with eps, norm, attack settings, n, seed, versions
```
"""

from keras_mwat.evaluation.cascade import evaluate_robustness
from keras_mwat.evaluation.masking import GradientMaskingWarning
from keras_mwat.evaluation.presets import PRESETS, attack_name, preset_attacks
from keras_mwat.evaluation.report import RobustnessReport, library_versions

__all__ = [
    "PRESETS",
    "GradientMaskingWarning",
    "RobustnessReport",
    "attack_name",
    "evaluate_robustness",
    "library_versions",
    "preset_attacks",
]
