"""``RobustnessReport``: every robustness number stored next to the settings that produced it.

A report holds the clean accuracy, the robust accuracy after each attack of a cascade and
the final worst case, together with the threat model (``eps``, ``norm``, ``value_range``),
each attack's full configuration (steps, restarts, queries, seeds), the number of points,
the seed, the library versions and the duration. It round-trips through JSON.
"""

from __future__ import annotations

import dataclasses
import json
import platform
from typing import Any

#: Config keys shown in the settings column of the table, with their labels.
_SETTING_LABELS = (
    ("num_steps", "steps"),
    ("num_restarts", "restarts"),
    ("num_queries", "queries"),
    ("step_size", "step"),
    ("loss", "loss"),
    ("num_target_classes", "targets"),
)


def library_versions() -> dict[str, str]:
    """Versions of Python, NumPy, TensorFlow, Keras and keras-mwat, for a report."""
    import keras
    import numpy
    import tensorflow

    from keras_mwat import __version__

    return {
        "keras_mwat": __version__,
        "tensorflow": tensorflow.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def _settings(entry: dict) -> str:
    config = entry.get("config", {})
    parts = []
    for key, label in _SETTING_LABELS:
        if key not in config or config[key] is None:
            continue
        value = config[key]
        if key == "num_target_classes" and not config.get("targeted", False):
            continue
        if isinstance(value, float):
            value = f"{value:.4g}"
        parts.append(f"{label}={value}")
    return ", ".join(parts)


@dataclasses.dataclass
class RobustnessReport:
    """Clean and robust accuracy of a classifier, with everything needed to reproduce them.

    Attributes:
        clean_accuracy: Fraction of the ``n`` points classified correctly, in [0, 1].
        robust_accuracy: Fraction of the ``n`` points that no attack fooled (the
            per-sample worst case over all attacks), in [0, 1].
        attacks: One dict per attack, in the order run: ``name``, ``class_name``,
            ``config`` (the attack's ``get_config()``), ``attacked`` (points it ran on),
            ``fooled`` (points it newly fooled), ``robust_accuracy_after`` (worst-case
            robust accuracy after this attack), ``robust_accuracy`` (this attack alone;
            None in a cascade, where it only ran on points earlier attacks left),
            ``seconds``.
        eps: Radius of the threat model.
        norm: ``"linf"`` or ``"l2"``.
        value_range: ``(low, high)`` box of valid inputs, or None.
        n: Number of points evaluated.
        seed: Seed of the evaluation.
        cascade: Whether each attack ran only on points still classified correctly.
        warnings: Gradient-masking warnings raised during the evaluation.
        checks: Numbers measured by the masking checks (empty if they were off).
        versions: Library versions (see ``library_versions``).
        duration_seconds: Wall time of the whole evaluation.
        model: Name of the evaluated classifier.
        created: ISO 8601 time stamp.

    Example:

    ```python
    report = km.evaluate_robustness(classifier, (x_test, y_test), eps=0.3, n=500)
    print(report)                                  # a table
    text = report.to_json()
    assert km.RobustnessReport.from_json(text) == report
    report.robust_accuracy, report.per_attack["APGD-T"]
    ```
    """

    clean_accuracy: float
    robust_accuracy: float
    attacks: list[dict[str, Any]]
    eps: float
    norm: str
    value_range: tuple[float, float] | None
    n: int
    seed: int | None
    cascade: bool = True
    warnings: list[str] = dataclasses.field(default_factory=list)
    checks: dict[str, Any] = dataclasses.field(default_factory=dict)
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    duration_seconds: float = 0.0
    model: str = ""
    created: str = ""

    def __post_init__(self) -> None:
        if self.value_range is not None:
            self.value_range = tuple(self.value_range)
        # JSON-native nested values (tuples become lists), so a JSON round trip is exact.
        self.attacks = json.loads(json.dumps(self.attacks))
        self.checks = json.loads(json.dumps(self.checks))

    @property
    def per_attack(self) -> dict[str, float]:
        """Worst-case robust accuracy after each attack, by attack name."""
        return {entry["name"]: entry["robust_accuracy_after"] for entry in self.attacks}

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-compatible dict."""
        data = dataclasses.asdict(self)
        data["value_range"] = list(self.value_range) if self.value_range is not None else None
        return data

    def to_json(self, indent: int | None = 2) -> str:
        """The report as a JSON string (``from_json`` reads it back)."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> RobustnessReport:
        """Reads a report written by ``to_json``.

        Raises:
            ValueError: If ``text`` is not a report (missing or unknown fields).
        """
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("`text` must be a JSON object written by RobustnessReport.to_json.")
        fields = {f.name for f in dataclasses.fields(cls)}
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        unknown, missing = set(data) - fields, required - set(data)
        if unknown or missing:
            raise ValueError(
                "`text` is not a RobustnessReport: "
                f"unknown fields {sorted(unknown)}, missing fields {sorted(missing)}."
            )
        return cls(**data)

    def save(self, path: str) -> None:
        """Writes ``to_json()`` to ``path``."""
        with open(path, "w", encoding="utf-8") as file:
            file.write(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str) -> RobustnessReport:
        """Reads a report written by ``save``."""
        with open(path, encoding="utf-8") as file:
            return cls.from_json(file.read())

    def __str__(self) -> str:
        box = "none" if self.value_range is None else f"[{self.value_range[0]:g}, {self.value_range[1]:g}]"
        mode = "cascade" if self.cascade else "each attack on all points"
        lines = [
            f"Robustness of {self.model or 'classifier'}: {self.norm} eps={self.eps:.4g}, "
            f"inputs in {box}, n={self.n}, seed={self.seed} ({mode})",
            f"{'attack':<12} {'settings':<46} {'attacked':>8} {'fooled':>6} {'robust acc':>10}",
            f"{'clean':<12} {'':<46} {self.n:>8} {'':>6} {self.clean_accuracy:>10.4f}",
        ]
        for entry in self.attacks:
            alone = entry.get("robust_accuracy")
            value = entry["robust_accuracy_after"] if alone is None else alone
            lines.append(
                f"{entry['name']:<12} {_settings(entry):<46.46} {entry['attacked']:>8} "
                f"{entry['fooled']:>6} {value:>10.4f}"
            )
        lines.append(f"{'worst case':<12} {'':<46} {'':>8} {'':>6} {self.robust_accuracy:>10.4f}")
        versions = ", ".join(f"{k} {v}" for k, v in self.versions.items())
        lines.append(f"{self.duration_seconds:.1f} s; {versions}")
        lines.extend(f"WARNING: {message}" for message in self.warnings)
        return "\n".join(lines)
