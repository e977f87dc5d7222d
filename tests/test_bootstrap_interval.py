"""``metrics.bootstrap_interval``: the intervals the accuracy benchmark puts on every row.
A resample takes whole clusters (a clip's blocks, a subject's sequences), so correlated items
do not pass for independent evidence."""

from __future__ import annotations

import numpy as np
import pytest

from omgclip.learn.metrics import bootstrap_interval


def test_iid_accuracy_interval_matches_the_normal_approximation():
    """3,589 independent right/wrong calls at 70%: the percentile interval is the textbook
    +-1.96 standard errors (1.5 points) to within a few tenths of a point."""
    right = np.random.default_rng(1).random(3589) < 0.70
    lo, hi = bootstrap_interval(lambda i: right[i].mean(), np.arange(right.size))
    p = right.mean()
    half = 1.96 * np.sqrt(p * (1 - p) / right.size)
    assert lo < p < hi
    assert abs((p - lo) - half) < 0.003 and abs((hi - p) - half) < 0.003


def test_a_resample_takes_whole_clusters():
    clusters = np.repeat(np.array(["c", "a", "e", "b", "d"]), [3, 1, 2, 4, 5])
    seen = []
    bootstrap_interval(lambda i: seen.append(i) or 0.0, clusters, resamples=50, seed=3)
    sizes = {k: int((clusters == k).sum()) for k in set(clusters)}
    for idx in seen:
        picked = clusters[idx]
        # as many clusters drawn as there are, each with all its items (a cluster drawn twice: twice)
        counts = {k: int((picked == k).sum()) for k in set(picked)}
        assert all(c % sizes[k] == 0 for k, c in counts.items())
        assert sum(c // sizes[k] for k, c in counts.items()) == len(sizes)
    assert len({tuple(i) for i in seen}) > 1  # the draws differ


def test_correlated_items_give_the_width_of_their_clusters_not_of_their_count():
    """10 clips of 20 identical blocks carry the evidence of 10 calls: clustered by clip the
    interval is as wide as for 10 independent calls, far wider than for 200."""
    calls = np.array([1, 1, 1, 1, 1, 1, 0, 0, 1, 0], float)
    blocks = np.repeat(calls, 20)
    clips = np.repeat(np.arange(10), 20)
    by_clip = bootstrap_interval(lambda i: blocks[i].mean(), clips)
    ten = bootstrap_interval(lambda i: calls[i].mean(), np.arange(10))
    naive = bootstrap_interval(lambda i: blocks[i].mean(), np.arange(200))
    assert by_clip == pytest.approx(ten)
    assert (by_clip[1] - by_clip[0]) > 2 * (naive[1] - naive[0])


def test_same_seed_same_draws_so_a_difference_of_equal_scores_is_zero():
    x = np.random.default_rng(0).random(50)
    assert bootstrap_interval(lambda i: x[i].mean() - x[i].mean(), np.arange(50)) == (0.0, 0.0)
    a = bootstrap_interval(lambda i: x[i].mean(), np.arange(50), seed=7)
    assert a == bootstrap_interval(lambda i: x[i].mean(), np.arange(50), seed=7)
    assert a != bootstrap_interval(lambda i: x[i].mean(), np.arange(50), seed=8)


@pytest.mark.parametrize("kw,clusters", [({"resamples": 0}, [0, 1]), ({"level": 1.0}, [0, 1]),
                                         ({}, []), ({}, [[0, 1]])])
def test_bad_arguments_are_refused(kw, clusters):
    with pytest.raises(ValueError):
        bootstrap_interval(lambda i: 0.0, clusters, **kw)


def test_uar_score_is_the_report_uar():
    """``uar_score`` (per resample) gives exactly ``metrics_from_predictions``'s UAR, classes
    absent from the true labels left out."""
    from omgclip.learn.metrics import metrics_from_predictions, uar_score

    rng = np.random.default_rng(4)
    for n in (1, 7, 300):
        y = np.where(rng.random(n) < 0.5, 6, rng.integers(0, 3, n))  # classes 3-5 absent
        p = np.where(rng.random(n) < 0.6, y, rng.integers(0, 7, n))
        assert uar_score(y, p) == pytest.approx(metrics_from_predictions(y, p, 7)["uar"], abs=1e-12)
    assert uar_score([0, 0, 2, 2], [0, 1, 2, 2]) == 0.75
