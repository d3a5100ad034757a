"""Evaluation metrics: top-1/Hit@1, mAP of softmax probabilities against scikit-learn, cube hit rate geometry, center spread."""
import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from adafocus.evaluation import metrics


def test_top1_single_and_multi_label():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]])
    assert metrics.top1(logits, torch.tensor([1, 2, 2])) == pytest.approx(2 / 3)
    multi = torch.tensor([[0, 1, 1], [0, 1, 0], [1, 0, 1]], dtype=torch.float)
    assert metrics.top1(logits, multi) == pytest.approx(2 / 3)


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_map_matches_sklearn_on_softmax_probabilities():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 6)) * 3
    target = (rng.uniform(size=(50, 6)) < 0.3).astype(float)
    target[:, 5] = 0  # a class with no positive is left out
    probs = softmax(logits)
    expected = np.mean([average_precision_score(target[:, c], probs[:, c]) for c in range(5)])
    raw = np.mean([average_precision_score(target[:, c], logits[:, c]) for c in range(5)])
    assert abs(expected - raw) > 1e-3  # the data tells the two rankings apart
    assert metrics.mean_average_precision(torch.tensor(logits), torch.tensor(target)) == pytest.approx(expected)
    labels = torch.tensor([0, 1, 2, 1])
    assert metrics.mean_average_precision(torch.nn.functional.one_hot(labels, 3).float() * 5, labels) == 1.0
    assert np.isnan(metrics.mean_average_precision(torch.randn(3, 2), torch.zeros(3, 2)))


def test_map_ranks_by_probability_not_by_logit():
    # Class 0's logit is higher in video 0, but video 1's other logit is far lower, so its
    # class-0 probability is higher: softmax ranks the positive video 1 first.
    logits = torch.tensor([[2.0, 2.0], [1.0, -5.0]])
    target = torch.tensor([[0, 1], [1, 0]])
    assert metrics.mean_average_precision(logits, target) == 1.0


def test_cube_hits_follow_the_integer_crop():
    cube, video = (1, 16, 16), (8, 32, 32)
    boxes = torch.tensor([[2, 5, 4, 14, 4, 14]])  # frames 2-4, pixels 4-13
    centers = torch.tensor([[[3.5, 9.0, 9.0],     # on it
                             [6.5, 9.0, 9.0],     # right place, wrong frame
                             [3.5, 24.0, 24.0],   # right frame, far away
                             [2.5, 0.0, 14.0],    # clamped to start 0 in y: covers it
                             [4.5, 9.0, 21.0]]])  # x window [13, 29): 1 of 10 columns, under half
    assert metrics.cube_hits(centers, boxes, cube, video).tolist() == [[True, False, False, True, False]]
    hits = torch.tensor([[False, True], [False, False], [True, False], [True, True]])
    assert metrics.hit_rate_after(hits, 1) == 0.5 and metrics.hit_rate_after(hits, 2) == 0.75


def test_center_spread_is_zero_for_a_collapsed_policy():
    same = torch.tensor([[[1.0, 2.0, 3.0]]]).expand(10, 2, 3)
    assert metrics.center_spread(same) == {"t": 0.0, "y": 0.0, "x": 0.0}
    spread = metrics.center_spread(torch.tensor([[[0.0, 0.0, 0.0]], [[2.0, 4.0, 6.0]]]))
    assert spread == {"t": 1.0, "y": 2.0, "x": 3.0}
