"""A model that predicts (almost) one class is marked and ranked after every other, and the
default classification metric gives it no credit."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from _studies import told
from cnn_lstm_hpo.reporting.analysis import ranked_front
from cnn_lstm_hpo.config import build_config
from cnn_lstm_hpo.errors import HPOError
from cnn_lstm_hpo.objectives import classification_score, evaluate_predictions
from cnn_lstm_hpo.results import ranked_pareto, summary_text
from cnn_lstm_hpo.study import open_study


def evaluate(pred: np.ndarray, y: np.ndarray):
    return evaluate_predictions(loss=1.0, y_class=y, pred_class=pred, y_return=np.zeros(len(y)), pred_return=np.zeros(len(y)),
                                metric="balanced_accuracy", classification_weight=1.0, regression_weight=0.0)


def test_ninety_nine_percent_one_class_is_a_constant_predictor():
    y = np.arange(200) % 2
    almost = np.ones(200, dtype=int)
    almost[:2] = 0  # 99 % one class
    assert evaluate(almost, y).constant_predictor
    almost[:3] = 0  # 98.5 %
    assert not evaluate(almost, y).constant_predictor
    assert evaluate(almost, y).top_prediction_share == pytest.approx(0.985)


def test_the_default_metric_scores_a_constant_predictor_at_chance_whatever_the_balance():
    y = (np.arange(1000) % 10 < 7).astype(int)  # 70 % up
    constant = np.ones(1000, dtype=int)
    metric = build_config("smoke").training.classification_metric
    assert metric == "balanced_accuracy"
    assert classification_score(y, constant, metric) == 0.5
    assert classification_score(y, constant, "accuracy") == 0.7  # plain accuracy still available, and fooled
    assert classification_score(y, y, metric) == 1.0


def test_constant_predictors_rank_after_every_other_trial():
    study = optuna.create_study(directions=["maximize", "minimize"])
    told(study, [0.70, 2.0], attrs={"constant_predictor": True, "val_metrics": {}})  # best by the weights
    told(study, [0.60, 1.0], attrs={"constant_predictor": False})
    told(study, [0.55, 0.5], attrs={"constant_predictor": False})
    told(study, [0.75, 3.0], attrs={"constant_predictor": True})
    weights = {"accuracy": 0.9, "training_time": 0.1}
    best = ranked_pareto(study, ["accuracy", "training_time"], weights)
    assert [(r["trial_number"], r["rank"], r["constant_predictor"]) for r in best] == [
        (1, 1, False), (2, 2, False), (3, 3, True), (0, 4, True)
    ]
    assert [t.number for t in ranked_front(study, ["accuracy", "training_time"], weights)] == [1, 2, 3, 0]
    text = summary_text(study, ["accuracy", "training_time"], best)
    assert "Constant predictors (validation predictions >= 99% one class): 2 of 4 complete trials" in text
    assert "Rank 4: trial 0: accuracy (composite)=0.7000, training_time=2.0000 min [constant predictor: ranked last]" in text
    assert "Rank 1: trial 1: accuracy (composite)=0.6000, training_time=1.0000 min\n" in text


def test_an_older_study_scored_by_accuracy_resumes_only_with_accuracy(tmp_path):
    """The default metric changed: a study that ran plain accuracy (its fingerprint says so) is
    refused under the new default, naming the old value, and resumes with it set."""
    config = build_config("smoke", {"save_dir": str(tmp_path)})
    from cnn_lstm_hpo.fingerprint import FROM_STORED_CONFIG, _config_fields

    recorded = {k: v for k, v in _config_fields(config).items() if k in FROM_STORED_CONFIG}  # as a real study records
    fingerprint = {"training.classification_metric": "accuracy", "max_epochs_per_trial": 3, **recorded}
    open_study(build_config("smoke", {"save_dir": str(tmp_path), "training": {"classification_metric": "accuracy"}}), fingerprint)
    with pytest.raises(HPOError) as error:
        open_study(config, {**fingerprint, "training.classification_metric": "balanced_accuracy"})
    assert "was run with other settings: training.classification_metric ('accuracy' -> 'balanced_accuracy')" in str(error.value)
    assert open_study(config, fingerprint).study_name == "smoke"
