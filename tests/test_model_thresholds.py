"""Threshold solver (Eq. 7, MSDNet budgeted procedure) and the accuracy-vs-GFLOPs curve."""
import pytest
import torch

from adafocus.inference import early_exit
from adafocus.evaluation.calibration import budget_curve, even_budgets, geometric_thresholds, solve_thresholds
from adafocus.evaluation.metrics import mean_average_precision

COST = [1.0, 3.0, 5.0, 7.0]


def random_exit_logits(n=300, exits=4, classes=5, seed=0):
    """Later exits are more often right; confidence varies per video."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=generator)
    logits = torch.randn(exits, n, classes, generator=generator) * torch.rand(exits, n, 1, generator=generator) * 4
    for k in range(exits):
        right = torch.rand(n, generator=generator) < 0.3 + 0.2 * k
        logits[k, right, labels[right]] += 3.0
    return logits, labels


def test_every_budget_is_met_on_the_data_it_was_solved_on():
    logits, labels = random_exit_logits()
    for budget in torch.linspace(1.0, 7.0, 13).tolist() + [2.2, 6.999]:
        eta = solve_thresholds(logits, labels, COST, budget)
        assert eta.shape == (4,)
        _, _, gflops = early_exit.simulate(logits, eta, COST)
        assert float(gflops.mean()) <= budget * (1 + 1e-9), (budget, float(gflops.mean()))


def test_budget_below_the_first_exit_is_an_error():
    logits, labels = random_exit_logits()
    with pytest.raises(ValueError, match="below the cost of the first exit"):
        solve_thresholds(logits, labels, COST, 0.5)
    with pytest.raises(ValueError, match="one value per exit"):
        solve_thresholds(logits, labels, COST[:3], 3.0)


def test_curve_accuracy_grows_with_budget_and_reaches_the_extremes():
    logits, labels = random_exit_logits()
    curve = budget_curve(logits, labels, COST)
    assert len(curve) == 20 and curve[0]["budget"] == 1.0 and curve[-1]["budget"] == 7.0
    for point in curve:
        assert set(point) >= {"budget", "gflops", "accuracy", "thresholds"}
        assert point["gflops"] <= point["budget"] * (1 + 1e-9)
        assert len(point["thresholds"]) == 4
    accuracies = [p["accuracy"] for p in curve]
    assert accuracies == sorted(accuracies)
    exit0 = float((logits[0].argmax(1) == labels).float().mean())
    assert curve[0]["accuracy"] == pytest.approx(exit0)  # budget = exit 0's cost: everyone stops there
    assert curve[-1]["accuracy"] >= float((logits[-1].argmax(1) == labels).float().mean())
    assert curve[-1]["accuracy"] > curve[0]["accuracy"]


def test_solver_sends_confident_videos_out_first():
    # Exit 0 is right exactly on the confident half; the last exit is always right.
    n, classes = 100, 3
    labels = torch.arange(n) % classes
    exit0 = torch.zeros(n, classes)
    exit0[:50, :] = 0.0
    exit0[torch.arange(50), labels[:50]] = 8.0  # confident and right
    exit0[torch.arange(50, 100), (labels[50:] + 1) % classes] = 0.3  # unsure and wrong
    exit1 = torch.zeros(n, classes)
    exit1[torch.arange(n), labels] = 2.0
    logits = torch.stack([exit0, exit1])
    eta = solve_thresholds(logits, labels, [1.0, 3.0], budget=2.0)
    picked, exit_index, gflops = early_exit.simulate(logits, eta, [1.0, 3.0])
    assert float(gflops.mean()) == pytest.approx(2.0)
    assert exit_index[:50].eq(0).all() and exit_index[50:].eq(1).all()
    assert bool((picked.argmax(1) == labels).all())


def test_geometric_law_sets_exit_proportions():
    entropies = torch.rand(3, 1000, generator=torch.Generator().manual_seed(0))
    eta = geometric_thresholds(entropies, q=1.0)  # equal thirds
    stops0 = entropies[0] <= eta[0]
    assert int(stops0.sum()) == 333
    assert eta[-1] == float("inf")
    assert geometric_thresholds(entropies, q=1e6)[0] == float("-inf")  # nobody stops at exit 0


def test_multi_label_curve_reports_map():
    # The third class has no positive; softmax probabilities rank both labelled classes right.
    scores = torch.tensor([[3.0, 0.0, 0.0], [3.0, 3.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]])
    labels = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]])
    assert mean_average_precision(scores, labels) == pytest.approx(1.0)
    reversed_scores = -scores
    assert mean_average_precision(reversed_scores, labels) < 0.6
    logits = torch.stack([scores, scores * 3])
    curve = budget_curve(logits, labels, [1.0, 2.0], budgets=[1.0, 2.0])
    assert curve[0]["accuracy"] == pytest.approx(1.0)
    assert all(0.0 <= p["accuracy"] <= 1.0 for p in curve)
