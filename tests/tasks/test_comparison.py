"""climml.tasks.comparison: which baselines the model beats, per score and lead."""

from climml.tasks.comparison import model_beats


def test_model_beats_compares_in_each_scores_direction():
    scores = {
        "model": {
            "rmse": {"1": 1.0, "2": 2.0},
            "acc": {"1": 0.5, "2": 0.4},
            "bias": {"1": -0.1},
            "rmse:p10": {"1": 0.9},
        },
        "persistence": {
            "rmse": {"1": 1.5, "2": 2.0},
            "acc": {"1": 0.6, "2": None},
            "rmse:p10": {"1": 1.4},
        },
        "climatology": {"rmse": {"1": 3.0}, "bias": {"1": 0.05}, "csi@1": {"1": 0.2}},
    }
    assert model_beats(scores) == {
        "persistence": {"rmse": {"1": True, "2": False}, "acc": {"1": False}},  # a tie loses
        "climatology": {"rmse": {"1": True}, "bias": {"1": False}},  # |bias| compared
    }


def test_pooled_nowcast_scores_are_compared_by_their_base_score():
    scores = {
        "model": {
            "crps/avg4": {"5": 0.2},
            "csi@1/max4": {"5": 0.5},
            "fss@1/16": {"5": 0.7},
            "rank_histogram": {"5": [0.5, 0.5]},  # a curve, never compared
        },
        "advection": {
            "crps/avg4": {"5": 0.3},
            "csi@1/max4": {"5": 0.6},
            "fss@1/16": {"5": 0.6},
            "rank_histogram": {"5": [0.4, 0.6]},
        },
    }
    assert model_beats(scores) == {
        "advection": {
            "crps/avg4": {"5": True},  # lower CRPS is better
            "csi@1/max4": {"5": False},
            "fss@1/16": {"5": True},
        }
    }
