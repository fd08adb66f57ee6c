import math

import pytest
import torch

from cst_ray.training.losses import DPOLoss, preference_metrics

# One pair: policy chosen/rejected -1, -3; reference -2, -2  =>  h = (−1+2) − (−3+2) = 2.
PC, PR, RC, RR = (torch.tensor([v]) for v in (-1.0, -3.0, -2.0, -2.0))
# A second pair where the policy prefers the rejected answer: h = (−3+2) − (−1+2) = −2.
PC2, PR2 = torch.tensor([-1.0, -3.0]), torch.tensor([-3.0, -1.0])
RC2, RR2 = torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0])


def sp(x):  # softplus = -log sigmoid(-x)
    return math.log1p(math.exp(x))


@pytest.mark.parametrize(
    "loss_type,beta,eps,expected",
    [
        ("sigmoid", 0.5, 0.0, sp(-1.0)),                        # -log σ(1) = 0.31326
        ("sigmoid", 0.5, 0.1, 0.9 * sp(-1.0) + 0.1 * sp(1.0)),  # conservative DPO
        ("robust", 0.5, 0.1, (0.9 * sp(-1.0) - 0.1 * sp(1.0)) / 0.8),
        ("hinge", 0.5, 0.0, 0.0),                               # relu(1 − 1)
        ("hinge", 0.25, 0.0, 0.5),                              # relu(1 − 0.5)
        ("ipo", 0.5, 0.0, 1.0),                                 # (2 − 1/(2·0.5))²
        ("ipo", 1.0, 0.0, 2.25),                                # (2 − 0.5)²
    ],
)
def test_loss_values_by_hand(loss_type, beta, eps, expected):
    losses, cr, rr = DPOLoss(beta, loss_type, eps)(PC, PR, RC, RR)
    assert losses.shape == (1,)
    assert losses.item() == pytest.approx(expected, rel=1e-6, abs=1e-7)
    assert cr.item() == pytest.approx(beta * 1.0) and rr.item() == pytest.approx(beta * -1.0)


def test_ipo_minimum_at_half_inverse_beta():
    losses, _, _ = DPOLoss(0.25, "ipo")(PC, PR, RC, RR)  # h = 2 = 1/(2·0.25)
    assert losses.item() == pytest.approx(0.0)


def test_batch_shapes_and_metrics():
    losses, cr, rr = DPOLoss(0.5, "sigmoid")(PC2, PR2, RC2, RR2)
    assert losses.shape == (2,)
    assert losses[0].item() == pytest.approx(sp(-1.0)) and losses[1].item() == pytest.approx(sp(1.0))
    m = preference_metrics(losses, cr, rr, PC2, PR2)
    assert m["rewards/accuracies"] == pytest.approx(0.5)
    assert m["rewards/margins"] == pytest.approx(0.0)
    assert m["rewards/chosen"] == pytest.approx(0.0) and m["logps/chosen"] == pytest.approx(-2.0)
    assert set(m) == {"loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                      "logps/chosen", "logps/rejected"}


def test_gradient_pushes_chosen_up():
    pc = torch.tensor([-2.0], requires_grad=True)
    pr = torch.tensor([-2.0], requires_grad=True)
    loss, _, _ = DPOLoss(0.1, "sigmoid")(pc, pr, torch.tensor([-2.0]), torch.tensor([-2.0]))
    loss.sum().backward()
    assert pc.grad.item() < 0 < pr.grad.item()  # descending raises chosen, lowers rejected


def test_bad_loss_type():
    with pytest.raises(ValueError):
        DPOLoss(0.1, "kto")
