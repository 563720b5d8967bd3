"""Screening the updates of one round before any strategy aggregates them.

Plain NumPy, no Flower: an update is the difference between the weights a
hospital sent back and the global weights it was sent. Two rules, each
configurable and each recorded when it rejects:

- the **norm bound**: an update longer than ``norm_bound`` times the round's
  median update norm is rejected (a scaled or noisy update);
- the **direction check**: an update whose cosine with the coordinate-wise
  median update is below ``min_cosine`` is rejected (a reversed update, a model
  trained on flipped labels).

The medians are taken over the round's own updates, so honest hospitals outvote
a minority of bad ones; with fewer than three updates nothing can be outvoted
and nothing is screened. Both rules need every update in the clear, so they do
not combine with secure aggregation (the server sees only the sum).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

Weights = Mapping[str, np.ndarray]
MIN_UPDATES = 3  # fewer cannot outvote anyone


@dataclass(frozen=True)
class Screen:
    """The screening rules of a federation.

    Parameters
    ----------
    norm_bound
        Reject an update whose L2 norm exceeds this multiple of the round's
        median update norm; 0 switches the rule off.
    min_cosine
        Reject an update whose cosine with the coordinate-wise median update is
        below this; -1 switches the rule off.
    """

    norm_bound: float = 3.0
    min_cosine: float = 0.0

    @property
    def active(self) -> bool:
        """Whether any rule is on."""
        return self.norm_bound > 0 or self.min_cosine > -1.0

    def verdicts(self, sent: Weights, replies: Sequence[Weights]) -> list[Verdict]:
        """Each reply's geometry and reasons for rejection, in order.

        Only floating-point arrays present in ``sent`` count; replies are
        assumed well formed (same keys and shapes as ``sent``). With fewer than
        three replies (or no rule on) every reply is accepted unmeasured.
        """
        if not self.active or len(replies) < MIN_UPDATES:
            return [Verdict() for _ in replies]
        norms, cosines = update_geometry(sent, replies)
        median = max(float(np.median(norms)), 1e-30)
        out = []
        for norm, cosine in zip(norms, cosines, strict=True):
            verdict = Verdict(float(norm / median), float(cosine))
            if self.norm_bound > 0 and norm > self.norm_bound * median:
                verdict.problems.append(
                    f"update norm {norm:.4g} is {verdict.norm_ratio:.1f}x the "
                    f"round's median {median:.4g} (bound {self.norm_bound:g}x)"
                )
            if self.min_cosine > -1.0 and cosine < self.min_cosine:
                verdict.problems.append(
                    f"update points away from the round's median update "
                    f"(cosine {cosine:.2f}, minimum {self.min_cosine:g})"
                )
            out.append(verdict)
        return out


@dataclass
class Verdict:
    """One update's screening.

    Its norm over the round's median norm, its cosine with the median update
    (NaN: not measured) and the reasons to reject it (none: accepted).
    """

    norm_ratio: float = float("nan")
    cosine: float = float("nan")
    problems: list[str] = field(default_factory=list)


def update_geometry(
    sent: Weights, replies: Sequence[Weights]
) -> tuple[np.ndarray, np.ndarray]:
    """Each update's L2 norm and its cosine with the coordinate-wise median update.

    Works one array at a time, so memory holds the replies' copies of one layer
    at once, not of the whole model.
    """
    n = len(replies)
    sq_norms = np.zeros(n)
    dots = np.zeros(n)
    median_sq = 0.0
    for key, reference in sent.items():
        if not np.issubdtype(reference.dtype, np.floating):
            continue
        base = reference.astype(np.float64).ravel()
        deltas = np.stack([r[key].astype(np.float64).ravel() - base for r in replies])
        median = np.median(deltas, axis=0)
        sq_norms += np.einsum("ij,ij->i", deltas, deltas)
        dots += deltas @ median
        median_sq += float(median @ median)
    norms = np.sqrt(sq_norms)
    denominator = norms * np.sqrt(median_sq)
    cosines = np.divide(dots, denominator, out=np.ones(n), where=denominator > 0)
    return norms, cosines
