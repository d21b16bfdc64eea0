"""Named attack suites for ``evaluate_robustness``: ``"quick"``, ``"standard"``, ``"autoattack"``.

* ``"quick"``: PGD-20 with 2 restarts (step ``2.5 eps / 20``), then APGD-CE (100 steps).
* ``"autoattack"``: the attacks of AutoAttack's standard version (Croce & Hein, ICML 2020),
  for L-infinity and L2 alike: APGD-CE (100 steps), APGD-T (targeted DLR, 100 steps, 9
  target classes), FAB-T (100 steps, 9 target classes) and the black-box Square attack
  (5,000 queries, ``p_init = 0.8``), in keras-mwat's own TensorFlow implementations.
* ``"standard"``: AutoAttack's standard version with FAB-T **replaced by CW-PGD** (PGD on
  the Carlini-Wagner margin loss, 100 steps of ``eps / 10``, random start): APGD-CE,
  APGD-T, CW-PGD, Square. It is not AutoAttack: use ``"autoattack"`` for numbers meant to
  be compared with AutoAttack's.

With fewer than 4 classes APGD-T uses the targeted cross-entropy (the targeted DLR loss
needs 4 classes); with 2 classes it is left out (its only target is APGD-CE's). The number
of target classes of APGD-T and FAB-T is capped at ``K - 1``.
"""

from __future__ import annotations

from keras_mwat import attacks as attack_lib
from keras_mwat import validation

PRESETS = ("quick", "standard", "autoattack")
#: Queries of the Square attack in the "standard" and "autoattack" presets (AutoAttack's).
SQUARE_QUERIES = 5000


def attack_name(attack) -> str:
    """A short display name for an attack: ``"APGD-CE"``, ``"APGD-T"``, ``"FAB-T"``, ...

    Example:

    ```python
    attack_name(keras_mwat.attacks.FAB(eps=0.3, targeted=True))  # 'FAB-T'
    ```
    """
    kind = type(attack).__name__
    if kind == "APGD":
        if attack.targeted:
            return "APGD-T" if attack.loss == "dlr" else "APGD-T-CE"
        return "APGD-" + attack.loss.upper()
    if kind == "FAB":
        return "FAB-T" if attack.targeted else "FAB"
    if kind == "CWPGD":
        return "CW-PGD"
    if kind == "FGSM":
        return "FGSM"
    if kind == "PGD":
        restarts = f"x{attack.num_restarts}" if attack.num_restarts > 1 else ""
        return f"PGD-{attack.num_steps}{restarts}"
    return kind


def preset_attacks(
    name: str,
    eps: float,
    norm: str = "linf",
    value_range: tuple[float, float] | None = (0.0, 1.0),
    seed: int | None = 0,
    num_classes: int = 10,
) -> list:
    """The attacks of preset ``name`` for a threat model, each seeded from ``seed``.

    Args:
        name: ``"quick"``, ``"standard"`` or ``"autoattack"``.
        eps: Radius of the threat model.
        norm: ``"linf"`` or ``"l2"``.
        value_range: ``(low, high)`` box of valid inputs, or None.
        seed: Seed of the first attack; later attacks use ``seed + 1``, ``seed + 2``, ...
        num_classes: Number of classes of the classifier.

    Returns:
        A list of ``keras_mwat.attacks.Attack`` objects, in cascade order.

    Example:

    ```python
    [attack_name(a) for a in preset_attacks("autoattack", eps=0.5, norm="l2")]
    # ['APGD-CE', 'APGD-T', 'FAB-T', 'Square']
    [attack_name(a) for a in preset_attacks("standard", eps=0.3)]
    # ['APGD-CE', 'APGD-T', 'CW-PGD', 'Square']
    ```
    """
    name = validation.check_choice(name, "attacks", PRESETS)

    def seeded(index: int) -> int | None:
        return None if seed is None else seed + index

    common = {"eps": eps, "norm": norm, "value_range": value_range}
    apgd_ce = attack_lib.APGD(num_steps=100, loss="ce", seed=seeded(1), **common)
    if name == "quick":
        pgd = attack_lib.PGD(
            step_size=2.5 * eps / 20 if eps > 0 else 1.0,
            num_steps=20,
            num_restarts=2,
            seed=seeded(0),
            **common,
        )
        return [pgd, apgd_ce]
    suite = [apgd_ce]
    if num_classes > 2:
        suite.append(
            attack_lib.APGD(
                num_steps=100,
                loss="dlr" if num_classes >= 4 else "ce",
                targeted=True,
                num_target_classes=min(9, num_classes - 1),
                seed=seeded(2),
                **common,
            )
        )
    if name == "autoattack":
        suite.append(
            attack_lib.FAB(
                num_steps=100,
                num_restarts=1,
                targeted=True,
                num_target_classes=min(9, num_classes - 1),
                seed=seeded(3),
                **common,
            )
        )
    else:
        suite.append(
            attack_lib.CWPGD(
                step_size=eps / 10 if eps > 0 else 1.0, num_steps=100, seed=seeded(3), **common
            )
        )
    suite.append(attack_lib.Square(num_queries=SQUARE_QUERIES, seed=seeded(4), **common))
    return suite
