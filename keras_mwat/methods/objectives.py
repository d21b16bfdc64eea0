"""Base objectives: what the attack maximises and which per-sample losses the weights multiply.

A training method is an objective (PGD-AT's cross-entropy, TRADES, MART) plus a weighting
(uniform, a heuristic, or learned). Reweighting methods that take ``base="at" | "trades"``
(MAIL, MWAT) pick their objective here, so each formula exists once.
"""

from __future__ import annotations

from keras_mwat import losses, validation

BASES = ("at", "trades")


class CrossEntropyObjective:
    """PGD-AT: the attack maximises CE; every sample's loss is ``CE(f(x_adv), y)``."""

    name = "at"
    needs_natural_logits = False
    attack_init = None  # the attack's own start

    def attack_loss(self, x, y, logits_clean):
        return None

    def sample_losses(self, model, step):
        return model.base_loss(step.y, step.logits_adv), None

    def get_config(self) -> dict:
        return {}


class TRADESObjective:
    """TRADES: the attack maximises ``KL(f(x) || f(x_adv))`` from ``x + 0.001 N(0, 1)``.

    The loss is ``CE(f(x), y) + beta * KL(f(x) || f(x_adv))``; sample weights multiply the KL
    term only (as MAIL-TRADES does). The clean logits of the attack are computed once per
    step, in inference mode.
    """

    name = "trades"
    needs_natural_logits = True
    attack_init = "normal"

    def __init__(self, beta: float = 6.0):
        self.beta = validation.check_nonnegative(beta, "beta")

    def attack_loss(self, x, y, logits_clean):
        return lambda labels, logits: losses.kl(logits_clean, logits)

    def sample_losses(self, model, step):
        weighted = self.beta * losses.kl(step.logits_natural, step.logits_adv)
        return weighted, losses.cross_entropy(step.y, step.logits_natural)

    def get_config(self) -> dict:
        return {"beta": self.beta}


class MARTObjective:
    """MART: boosted CE on x_adv plus ``beta * KL(p_nat || p_adv) * (1 - p_nat[y])``."""

    name = "mart"
    needs_natural_logits = True
    attack_init = None

    def __init__(self, beta: float = 6.0):
        self.beta = validation.check_nonnegative(beta, "beta")

    def attack_loss(self, x, y, logits_clean):
        return None

    def sample_losses(self, model, step):
        return losses.mart(step.y, step.logits_natural, step.logits_adv, beta=self.beta), None

    def get_config(self) -> dict:
        return {"beta": self.beta}


def from_base(base: str, beta: float = 6.0):
    """The objective of ``base`` ("at" or "trades")."""
    validation.check_choice(base, "base", BASES)
    return CrossEntropyObjective() if base == "at" else TRADESObjective(beta)
