"""Screening the updates of one round before any strategy aggregates them.

Plain NumPy, no Flower: an update is the difference between the weights a
hospital sent back and the global weights it was sent. Two rules, each
configurable and each recorded when it rejects, applied one after the other:

1. the **norm bound**: an update longer than ``norm_bound`` times the round's
   median update norm is rejected (a scaled or noisy update);
2. the **direction check**, over the updates the norm bound kept: an update is
   rejected when its cosine with their coordinate-wise median update is below
   ``min_cosine`` *and* at least :data:`COSINE_GAP` below the median of their
   cosines (a reversed update, a model trained on flipped labels). The second
   condition spares an honest hospital that merely disagrees when every
   update is small and agreement is low (the last rounds, a minority scanner):
   on the demo a scanner-shifted hospital's honest update had cosine -0.28 in
   the last round, while the others' median was about 0.5.

The medians are taken over the round's own updates, so honest hospitals outvote
a minority of bad ones; with fewer than three updates nothing can be outvoted
and a rule is not applied. Both rules need every update in the clear, so they
do not combine with secure aggregation (the server sees only the sum).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

Weights = Mapping[str, np.ndarray]
MIN_UPDATES = 3  # fewer cannot outvote anyone
COSINE_GAP = 1.0  # how far below the round's median cosine a rejected update is
CHUNK = 1 << 16  # coordinates per step: n replies x 512 KiB of float64 at most


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
        below this (and :data:`COSINE_GAP` below the median cosine); -1 switches
        the rule off.
    """

    norm_bound: float = 10.0
    min_cosine: float = -1.0

    @property
    def active(self) -> bool:
        """Whether any rule is on."""
        return self.norm_bound > 0 or self.min_cosine > -1.0

    def verdicts(
        self,
        sent: Weights,
        replies: Sequence[Weights],
        norms: Sequence[float] | None = None,
    ) -> list[Verdict]:
        """Each reply's geometry and reasons for rejection, in order.

        Only floating-point arrays present in ``sent`` count; replies are
        assumed well formed (same keys and shapes as ``sent``). With fewer than
        three replies (or no rule on) every reply is accepted unmeasured.
        ``norms``, each update's norm measured as it arrived
        (:func:`update_norm`), spares reading the replies again: the
        direction check alone then reads them.
        """
        out = [Verdict() for _ in replies]
        if not self.active or len(replies) < MIN_UPDATES:
            return out
        if norms is None:
            norms = list(update_geometry(sent, replies, with_cosines=False)[0])
        median = max(float(np.median(norms)), 1e-30)
        for verdict, norm in zip(out, norms, strict=True):
            verdict.norm_ratio = float(norm / median)
            if self.norm_bound > 0 and norm > self.norm_bound * median:
                verdict.problems.append(
                    f"update norm {norm:.4g} is {verdict.norm_ratio:.1f}x the "
                    f"round's median {median:.4g} (bound {self.norm_bound:g}x)"
                )
        kept = [i for i, v in enumerate(out) if not v.problems]
        if self.min_cosine <= -1.0 or len(kept) < MIN_UPDATES:
            return out
        _, cosines = update_geometry(sent, [replies[i] for i in kept])
        typical = float(np.median(cosines))
        for i, cosine in zip(kept, cosines, strict=True):
            out[i].cosine = float(cosine)
            if cosine < self.min_cosine and cosine < typical - COSINE_GAP:
                out[i].problems.append(
                    f"update points away from the round's median update (cosine "
                    f"{cosine:.2f}, minimum {self.min_cosine:g}; the round's "
                    f"median cosine {typical:.2f})"
                )
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


def update_norm(sent: Weights, reply: Weights) -> float:
    """The L2 norm of one update (``reply - sent``, floating arrays of ``sent``)."""
    norms, _ = update_geometry(sent, [reply], with_cosines=False)
    return float(norms[0])


def update_geometry(
    sent: Weights,
    replies: Sequence[Weights],
    *,
    with_cosines: bool = True,
    chunk: int = CHUNK,
) -> tuple[np.ndarray, np.ndarray]:
    """Each update's L2 norm and its cosine with the coordinate-wise median update.

    Works through ``chunk`` coordinates at a time, so memory holds the replies'
    copies of one chunk at once, not of a layer or the model: the replies may
    be memory-mapped files. Without ``with_cosines`` the cosines are all 1 (and
    no median is computed).
    """
    n = len(replies)
    sq_norms = np.zeros(n)
    dots = np.zeros(n)
    median_sq = 0.0
    for key, reference in sent.items():
        if not np.issubdtype(reference.dtype, np.floating):
            continue
        base = reference.ravel()
        flats = [r[key].ravel() for r in replies]
        for start in range(0, base.size, chunk):
            stop = start + chunk
            here = base[start:stop].astype(np.float64)
            deltas = np.stack([f[start:stop].astype(np.float64) - here for f in flats])
            sq_norms += np.einsum("ij,ij->i", deltas, deltas)
            if with_cosines:
                median = np.median(deltas, axis=0)
                dots += deltas @ median
                median_sq += float(median @ median)
    norms = np.sqrt(sq_norms)
    denominator = norms * np.sqrt(median_sq)
    cosines = np.divide(dots, denominator, out=np.ones(n), where=denominator > 0)
    return norms, cosines
