"""Named attack suites for ``evaluate_robustness``: ``"quick"`` and ``"standard"``.

* ``"quick"``: PGD-20 with 2 restarts (step ``2.5 eps / 20``), then APGD-CE (100 steps).
* ``"standard"``: AutoAttack's choice of diverse attacks with CW-PGD in place of FAB-T:
  APGD-CE (100 steps), APGD-T (targeted DLR, 100 steps, 9 target classes or K - 1),
  CW-PGD (100 steps of ``eps / 10``, random start) and the black-box Square attack
  (5,000 queries, ``p_init = 0.8``), which checks that the gradient-based attacks are not
  fooled by gradient masking.

With fewer than 4 classes APGD-T uses the targeted cross-entropy (the targeted DLR loss
needs 4 classes); with 2 classes it is left out (its only target is APGD-CE's).
"""

from __future__ import annotations

from keras_mwat import attacks as attack_lib
from keras_mwat import validation

PRESETS = ("quick", "standard")
#: Queries of the Square attack in the "standard" preset (AutoAttack's budget).
SQUARE_QUERIES = 5000


def attack_name(attack) -> str:
    """A short display name for an attack: ``"APGD-CE"``, ``"APGD-T"``, ``"PGD-20x2"``."""
    kind = type(attack).__name__
    if kind == "APGD":
        if attack.targeted:
            return "APGD-T" if attack.loss == "dlr" else "APGD-T-CE"
        return "APGD-" + attack.loss.upper()
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
        name: ``"quick"`` or ``"standard"``.
        eps: Radius of the threat model.
        norm: ``"linf"`` or ``"l2"``.
        value_range: ``(low, high)`` box of valid inputs, or None.
        seed: Seed of the first attack; later attacks use ``seed + 1``, ``seed + 2``, ...
        num_classes: Number of classes of the classifier.

    Returns:
        A list of ``keras_mwat.attacks.Attack`` objects, in cascade order.

    Example:

    ```python
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
    suite.append(
        attack_lib.CWPGD(
            step_size=eps / 10 if eps > 0 else 1.0, num_steps=100, seed=seeded(3), **common
        )
    )
    suite.append(attack_lib.Square(num_queries=SQUARE_QUERIES, seed=seeded(4), **common))
    return suite
