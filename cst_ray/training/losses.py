"""The DPO loss family, as one small module (TRL's loss-type names).

Notation, per pair b in a batch of B:
    pi_c, pi_r   policy log-prob of chosen / rejected response      (summed over tokens,
    ref_c, ref_r reference log-prob of chosen / rejected response    or averaged for ipo)
    h = (pi_c - ref_c) - (pi_r - ref_r)

    sigmoid  -(1-eps) * log sigma(beta h) - eps * log sigma(-beta h)     (DPO; eps = label smoothing)
    robust   (-(1-eps) * log sigma(beta h) + eps * log sigma(-beta h)) / (1 - 2 eps)
    hinge    max(0, 1 - beta h)
    ipo      (h - 1 / (2 beta))^2                                       (use length-averaged log-probs)
"""

from __future__ import annotations

import torch  # noqa: TID253 (runs only in training workers)
import torch.nn.functional as F  # noqa: TID253 (runs only in training workers)
from torch import nn  # noqa: TID253 (runs only in training workers)

LOSS_TYPES = ("sigmoid", "ipo", "hinge", "robust")


class DPOLoss(nn.Module):
    def __init__(self, beta: float = 0.1, loss_type: str = "sigmoid", label_smoothing: float = 0.0):
        super().__init__()
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
        if loss_type == "robust" and not 0 <= label_smoothing < 0.5:
            raise ValueError("robust DPO needs 0 <= label_smoothing < 0.5")
        self.beta = beta
        self.loss_type = loss_type
        self.label_smoothing = label_smoothing

    def forward(
        self,
        policy_chosen_logps: torch.Tensor,
        policy_rejected_logps: torch.Tensor,
        reference_chosen_logps: torch.Tensor,
        reference_rejected_logps: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Args:
            policy_chosen_logps:      [B]
            policy_rejected_logps:    [B]
            reference_chosen_logps:   [B]
            reference_rejected_logps: [B]
        Returns:
            losses:           [B]  per-pair loss (take .mean() to optimise)
            chosen_rewards:   [B]  beta * (pi_c - ref_c), detached
            rejected_rewards: [B]  beta * (pi_r - ref_r), detached
        """
        h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
        beta, eps = self.beta, self.label_smoothing
        if self.loss_type == "sigmoid":
            losses = -(1 - eps) * F.logsigmoid(beta * h) - eps * F.logsigmoid(-beta * h)
        elif self.loss_type == "robust":
            losses = (-(1 - eps) * F.logsigmoid(beta * h) + eps * F.logsigmoid(-beta * h)) / (1 - 2 * eps)
        elif self.loss_type == "hinge":
            losses = torch.relu(1 - beta * h)
        else:  # ipo
            losses = (h - 1 / (2 * beta)) ** 2
        chosen_rewards = beta * (policy_chosen_logps - reference_chosen_logps).detach()
        rejected_rewards = beta * (policy_rejected_logps - reference_rejected_logps).detach()
        return losses, chosen_rewards, rejected_rewards


def preference_metrics(losses, chosen_rewards, rejected_rewards, policy_chosen_logps, policy_rejected_logps) -> dict:
    """TRL's metric names, averaged over the batch."""
    return {
        "loss": losses.mean().item(),
        "rewards/chosen": chosen_rewards.mean().item(),
        "rewards/rejected": rejected_rewards.mean().item(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
        "logps/chosen": policy_chosen_logps.detach().mean().item(),
        "logps/rejected": policy_rejected_logps.detach().mean().item(),
    }
