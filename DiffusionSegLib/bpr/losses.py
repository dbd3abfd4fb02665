"""Yan et al.'s self-ordering losses on m slices of one volume taken at equal physical gaps.

Only the order of the slices in the body is known (from the image geometry), not what
they show, so the losses constrain score *differences*:

- order: a higher slice must score higher: ``mean softplus(-(s_{i+1} - s_i))``, which is
  ``-log sigmoid`` of each consecutive difference (slices sorted by height).
- distance: the slices are equally spaced in mm, so the consecutive differences must be
  equal: ``mean smooth_l1(d_{i+1} - d_i)`` with ``d_i = s_{i+1} - s_i``. Without it the
  order loss alone could squeeze most of the body into a few units and stretch the rest.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sort_by_height(scores: torch.Tensor, z_mm: torch.Tensor) -> torch.Tensor:
    """``scores`` ``(B, m)`` reordered so that each row runs from the lowest to the highest slice.

    Args:
        scores: ``(B, m)`` score of each sampled slice, in any order.
        z_mm: ``(B, m)`` LPS z (mm, +z = superior) of the same slices.
    """
    return torch.gather(scores, 1, torch.argsort(z_mm, dim=1))


def order_loss(ordered: torch.Tensor) -> torch.Tensor:
    """Scalar: ``mean softplus(-(s_{i+1} - s_i))`` over ``ordered`` ``(B, m)``, lowest slice first."""
    return F.softplus(-(ordered[:, 1:] - ordered[:, :-1])).mean()


def distance_loss(ordered: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Scalar: ``mean smooth_l1(d_{i+1} - d_i)``, ``d`` the consecutive differences of ``ordered`` ``(B, m)``.

    Needs m >= 3 (two differences to compare); 0 otherwise.
    """
    steps = ordered[:, 1:] - ordered[:, :-1]
    if steps.shape[1] < 2:
        return ordered.sum() * 0.0
    return F.smooth_l1_loss(steps[:, 1:], steps[:, :-1], beta=beta)


def slice_ordering_loss(scores: torch.Tensor, z_mm: torch.Tensor, distance_weight: float = 1.0
                        ) -> tuple[torch.Tensor, dict[str, float]]:
    """Order loss + ``distance_weight`` x distance loss.

    Args:
        scores: ``(B, m)`` scores of m slices from each of B volumes; in every row the
            slices are equally spaced in z.
        z_mm: ``(B, m)`` their heights (LPS z, mm); only their order is used.

    Returns:
        the scalar loss, and its parts as floats for logging.
    """
    ordered = sort_by_height(scores, z_mm)
    order, distance = order_loss(ordered), distance_loss(ordered)
    return order + distance_weight * distance, {"order": float(order.detach()), "distance": float(distance.detach())}
