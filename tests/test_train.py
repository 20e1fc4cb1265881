"""The trainer (learning, callback, early stopping, divergence, optimizers) and the objective maths."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from cnn_lstm_hpo import train as train_module
from cnn_lstm_hpo.config import TrainingConfig, create_optimization_config
from cnn_lstm_hpo.errors import HPOError, TrialDiverged
from cnn_lstm_hpo.model import HybridCNNLSTM, ModelConfig
from cnn_lstm_hpo.objectives import (
    Evaluation,
    classification_score,
    directions,
    evaluate_predictions,
    regression_score,
    weighted_ranks,
)
from cnn_lstm_hpo.space import OPTIMIZERS, SCHEDULERS
from cnn_lstm_hpo.train import PROBE_AFTER, IntegratedCNNLSTMTrainer, Trainer, make_optimizer, resolve_device
from cnn_lstm_hpo.windows import Split, WindowLoader

CPU = torch.device("cpu")


def tiny_model(n_features: int = 10, num_classes: int = 2, seed: int = 0) -> HybridCNNLSTM:
    torch.manual_seed(seed)
    return HybridCNNLSTM(ModelConfig(n_features, num_classes, 16, (2, 3), 2, 16, 1, False, 0.1))


def head(split: Split, n: int) -> Split:
    return split.take(torch.arange(min(n, len(split))))


def make_trainer(data, params, *, n_train=None, n_val=None, seed=0, **training) -> Trainer:
    train = data.train if n_train is None else head(data.train, n_train)
    val = data.val if n_val is None else head(data.val, n_val)
    return Trainer(tiny_model(seed=seed), train, val, params, TrainingConfig(**training), device=CPU, seed=seed)


# --- learning -------------------------------------------------------------------------------------


def test_trainer_learns_the_synthetic_momentum_signal(synthetic_windows, small_params):
    data = synthetic_windows
    majority = data.val.majority_rate()
    assert 0.5 <= majority < 0.6
    trainer = make_trainer(data, small_params, early_stopping_patience=10)
    result = trainer.fit(5)
    assert len(result.epochs) == 5 and not result.stopped_early
    # AR(1) momentum 0.5 allows ~0.67; a tiny model gets > 0.62 in 5 epochs on every seed tried.
    assert result.best.val.accuracy > majority + 0.04
    assert result.epochs[-1].train_loss < result.epochs[0].train_loss
    # The best epoch's weights are restored at the end.
    final = trainer.evaluate(data.val)
    assert final.loss == pytest.approx(result.best.val.loss, rel=1e-5)
    assert result.best.val.loss == min(e.val.loss for e in result.epochs)


def test_same_seed_same_run(synthetic_windows, small_params):
    runs = [make_trainer(synthetic_windows, small_params, n_train=600, n_val=200, seed=3).fit(2) for _ in range(2)]
    assert [e.train_loss for e in runs[0].epochs] == [e.train_loss for e in runs[1].epochs]
    assert [e.val.loss for e in runs[0].epochs] == [e.val.loss for e in runs[1].epochs]


def test_evaluation_fields_are_consistent(synthetic_windows, small_params):
    trainer = make_trainer(synthetic_windows, small_params, n_train=300, n_val=300)
    trainer.fit(1)
    val = head(synthetic_windows.val, 300)
    probs, rets = trainer.predict(val.x)
    assert probs.shape == (300, 2) and rets.shape == (300,)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    ev = trainer.evaluate(val)
    y = val.y_class.numpy()
    assert ev.accuracy == pytest.approx(float(np.mean(probs.argmax(axis=1) == y)))
    assert ev.majority_rate == pytest.approx(val.majority_rate())
    assert ev.regression_score == pytest.approx(regression_score(val.y_return.numpy(), rets))
    assert ev.composite == pytest.approx(0.7 * ev.classification_score + 0.3 * ev.regression_score)


# --- the per-epoch callback ---------------------------------------------------------------------------


def test_callback_sees_every_epoch_in_order(synthetic_windows, small_params):
    seen = []
    trainer = make_trainer(synthetic_windows, small_params, n_train=512, n_val=256, early_stopping_patience=10)
    result = trainer.fit(3, on_epoch=seen.append)
    assert [e.epoch for e in seen] == [1, 2, 3]
    assert [e.last for e in seen] == [False, False, True]
    assert seen == result.epochs
    for e in seen:
        assert math.isfinite(e.train_loss) and math.isfinite(e.val.loss)
        assert math.isfinite(e.val.composite) and 0.0 <= e.val.composite <= 1.0
        assert 0.0 <= e.val.accuracy <= 1.0
        assert e.wall_seconds > 0 and e.cpu_seconds > 0
    assert result.wall_seconds == pytest.approx(sum(e.wall_seconds for e in seen))
    assert result.cpu_seconds == pytest.approx(sum(e.cpu_seconds for e in seen))


def test_exception_from_callback_stops_training(synthetic_windows, small_params):
    class Stop(Exception):
        pass

    calls = []

    def on_epoch(epoch):
        calls.append(epoch.epoch)
        if epoch.epoch == 2:
            raise Stop

    trainer = make_trainer(synthetic_windows, small_params, n_train=256, n_val=128, early_stopping_patience=10)
    with pytest.raises(Stop):
        trainer.fit(6, on_epoch=on_epoch)
    assert calls == [1, 2]


# --- early stopping ------------------------------------------------------------------------------------


def test_early_stopping_when_validation_loss_stops_improving(synthetic_windows, small_params):
    # A learning rate of zero leaves the model unchanged: every epoch scores the same loss.
    params = dict(small_params, learning_rate=0.0)
    trainer = make_trainer(synthetic_windows, params, n_train=256, n_val=128, early_stopping_patience=2)
    result = trainer.fit(10)
    assert result.stopped_early
    assert len(result.epochs) == 3  # epoch 1 is best, two stale epochs follow
    assert result.best_epoch == 1
    assert [e.last for e in result.epochs] == [False, False, True]  # early stop is announced


def test_no_early_stop_within_patience(synthetic_windows, small_params):
    params = dict(small_params, learning_rate=0.0)
    trainer = make_trainer(synthetic_windows, params, n_train=256, n_val=128, early_stopping_patience=5)
    result = trainer.fit(3)
    assert not result.stopped_early and len(result.epochs) == 3


def test_early_stopping_semantics_and_best_weights(monkeypatch, synthetic_windows, small_params):
    losses = iter([1.0, 0.8, 0.9, 0.7, 0.75, 0.76, 0.5])
    real_evaluate = Trainer.evaluate

    def scripted(self, split):
        ev = real_evaluate(self, split)
        return Evaluation(**{**ev.to_dict(), "loss": next(losses)})

    monkeypatch.setattr(Trainer, "evaluate", scripted)
    states = {}
    trainer = make_trainer(synthetic_windows, small_params, n_train=256, n_val=128, early_stopping_patience=2)

    def on_epoch(epoch):
        states[epoch.epoch] = copy.deepcopy(trainer.model.state_dict())

    result = trainer.fit(20, on_epoch=on_epoch)
    assert [e.epoch for e in result.epochs] == [1, 2, 3, 4, 5, 6]  # 0.75, 0.76 do not beat 0.7
    assert result.stopped_early and result.best_epoch == 4
    assert result.best.val.loss == 0.7
    final = trainer.model.state_dict()
    assert all(torch.equal(final[k], states[4][k]) for k in final)
    assert not all(torch.equal(final[k], states[6][k]) for k in final)


# --- divergence ------------------------------------------------------------------------------------------


def test_nan_training_loss_raises_trial_diverged(monkeypatch, synthetic_windows, small_params):
    real_loss = Trainer._loss
    monkeypatch.setattr(Trainer, "_loss", lambda self, *a: real_loss(self, *a) * float("nan"))
    trainer = make_trainer(synthetic_windows, small_params, n_train=256, n_val=128)
    with pytest.raises(TrialDiverged, match="^non-finite training loss at epoch 1$"):
        trainer.fit(3)


def test_non_finite_validation_raises_trial_diverged(monkeypatch, synthetic_windows, small_params):
    def nan_predict(self, x):
        return np.full((len(x), 2), np.nan), np.full(len(x), np.nan)

    monkeypatch.setattr(Trainer, "predict", nan_predict)
    trainer = make_trainer(synthetic_windows, small_params, n_train=256, n_val=128)
    with pytest.raises(TrialDiverged, match="^non-finite validation loss at epoch 1$"):
        trainer.fit(3)


def test_exploding_weights_raise_trial_diverged(synthetic_windows, small_params):
    trainer = make_trainer(synthetic_windows, small_params, n_train=256, n_val=128)
    with torch.no_grad():
        trainer.model.class_head.weight.fill_(float("inf"))
    with pytest.raises(TrialDiverged):
        trainer.fit(2)


# --- optimizers and schedulers ------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_trains(synthetic_windows, small_params, optimizer):
    params = dict(small_params, optimizer=optimizer, learning_rate=1e-2, weight_decay=1e-4)
    trainer = make_trainer(synthetic_windows, params, n_train=256, n_val=128, early_stopping_patience=5)
    before = copy.deepcopy(trainer.model.state_dict())
    result = trainer.fit(2)
    assert len(result.epochs) == 2
    assert all(math.isfinite(e.train_loss) and math.isfinite(e.val.loss) for e in result.epochs)
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_make_optimizer_types():
    model = tiny_model()
    base = {"learning_rate": 1e-3, "weight_decay": 1e-5}
    kinds = {name: type(make_optimizer(model, {**base, "optimizer": name})) for name in OPTIMIZERS}
    assert kinds == {
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "sgd": torch.optim.SGD,
        "rmsprop": torch.optim.RMSprop,
    }
    sgd = make_optimizer(model, {**base, "optimizer": "sgd"})
    assert sgd.param_groups[0]["lr"] == 1e-3 and sgd.param_groups[0]["weight_decay"] == 1e-5


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_every_scheduler_trains(monkeypatch, synthetic_windows, small_params, scheduler):
    made = []
    real = train_module.make_scheduler

    def recording(optimizer, name, max_epochs):
        made.append((optimizer, real(optimizer, name, max_epochs)))
        return made[-1][1]

    monkeypatch.setattr(train_module, "make_scheduler", recording)
    params = dict(small_params, scheduler=scheduler, learning_rate=1e-2)
    trainer = make_trainer(synthetic_windows, params, n_train=256, n_val=128, early_stopping_patience=5)
    result = trainer.fit(2)
    assert len(result.epochs) == 2
    assert all(math.isfinite(e.val.loss) for e in result.epochs)
    optimizer, sched = made[0]
    lr = optimizer.param_groups[0]["lr"]
    if scheduler == "none":
        assert sched is None and lr == 1e-2
    elif scheduler == "cosine":
        assert lr == pytest.approx(0.0, abs=1e-12)  # T_max = max_epochs: annealed to zero at the end
    elif scheduler == "step":
        assert lr == pytest.approx(1e-2 * 0.25)  # step_size max(1, 2 // 3) = 1, gamma 0.5, two steps
    else:
        assert isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau)


@pytest.mark.parametrize(("epochs", "factor"), [(3, 1.0), (4, 0.5)])
def test_plateau_halves_the_rate_after_patience_plus_one_stale_epochs(monkeypatch, synthetic_windows, small_params, epochs, factor):
    made = []
    real = train_module.make_scheduler
    monkeypatch.setattr(train_module, "make_scheduler", lambda opt, name, n: made.append(opt) or real(opt, name, n))
    # A rate so small that the validation loss cannot move by the scheduler's 1e-4 threshold (but above its
    # eps of 1e-8, below which it ignores a reduction): a plateau
    # from epoch 2 on. Patience 2: epochs 2, 3 and 4 are stale, the rate halves at the end of epoch 4.
    params = dict(small_params, scheduler="plateau", learning_rate=1e-6, weight_decay=0.0)
    trainer = make_trainer(synthetic_windows, params, n_train=256, n_val=128, early_stopping_patience=10)
    assert len(trainer.fit(epochs).epochs) == epochs
    assert made[0].param_groups[0]["lr"] == pytest.approx(1e-6 * factor)


# --- devices and the guide's trainer entry point -----------------------------------------------------


def test_resolve_device():
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(HPOError, match="^training.device is 'cuda' but no CUDA device is available$"):
            resolve_device("cuda")


def test_integrated_trainer_prepare_data():
    config = create_optimization_config(data={"source": "synthetic", "sequence_length": 10})
    trainer = IntegratedCNNLSTMTrainer(config, device="cpu")
    loaders = trainer.prepare_data(["SYN_A"], ("2010-01-01", "2013-12-31"), batch_size=32)
    assert all(isinstance(loader, WindowLoader) for loader in loaders)
    train, val, test = (loader.split for loader in loaders)
    assert set(train.symbols) == {"SYN_A"}
    assert max(test.dates) <= np.datetime64("2013-12-31")
    assert max(train.dates) < min(val.dates) and max(val.dates) < min(test.dates)
    x, y, r = next(iter(loaders[0]))
    assert x.shape == (32, 10, 10) and y.shape == (32,) and r.shape == (32,)


# --- objective maths --------------------------------------------------------------------------------------


def test_regression_score_reference_points():
    y = np.array([0.01, -0.02, 0.005, 0.03])
    assert regression_score(y, np.zeros_like(y)) == pytest.approx(0.5)
    assert regression_score(y, y) == 1.0
    assert regression_score(y, -y) == pytest.approx(1 / (1 + 4))  # MSE = 4 * MSE_zero
    assert regression_score(y, 0.5 * y) == pytest.approx(1 / (1 + 0.25))
    assert regression_score(np.zeros(3), np.zeros(3)) == 1.0
    assert regression_score(np.zeros(3), np.ones(3)) == 0.0


def test_classification_scores():
    y = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    pred = np.array([0, 1, 1, 1, 1, 1, 1, 1])
    assert classification_score(y, pred, "accuracy") == pytest.approx(6 / 8)
    assert classification_score(y, pred, "balanced_accuracy") == pytest.approx((1 / 3 + 1) / 2)
    assert classification_score(y, y, "mcc") == pytest.approx(1.0)
    assert classification_score(y, 1 - y, "mcc") == pytest.approx(0.0)
    assert classification_score(y, np.ones_like(y), "mcc") == pytest.approx(0.5)  # MCC 0 -> 0.5


def test_evaluate_predictions_composite():
    y_class = np.array([1, 1, 0, 1])
    y_return = np.array([0.01, 0.02, -0.01, 0.03])
    ev = evaluate_predictions(
        loss=0.3,
        y_class=y_class,
        pred_class=np.array([1, 0, 0, 1]),
        y_return=y_return,
        pred_return=np.zeros(4),
        metric="accuracy",
        classification_weight=3.0,
        regression_weight=1.0,
    )
    assert ev.accuracy == 0.75 and ev.classification_score == 0.75
    assert ev.regression_score == pytest.approx(0.5)
    assert ev.composite == pytest.approx((3 * 0.75 + 1 * 0.5) / 4)
    assert ev.majority_rate == 0.75
    assert ev.to_dict()["loss"] == 0.3


def test_directions():
    assert directions(["training_time", "model_size", "accuracy"]) == ["minimize", "minimize", "maximize"]


def test_weighted_ranks_hand_made():
    objectives = ["accuracy", "training_time", "model_size"]
    values = np.array(
        [
            [0.60, 10.0, 5.0],  # best accuracy, slowest, mid size
            [0.55, 1.0, 1.0],  # worst accuracy, fastest, smallest
            [0.58, 5.0, 9.0],  # middle accuracy, mid time, biggest
        ]
    )
    # Normalised (1 = best): acc [1, 0, 0.6]; time [0, 1, 5/9]; size [0.5, 1, 0].
    accuracy_only = weighted_ranks(values, objectives, {"accuracy": 1.0})
    assert accuracy_only.tolist() == [1, 3, 2]
    efficiency = weighted_ranks(values, objectives, {"training_time": 0.5, "model_size": 0.5})
    assert efficiency.tolist() == [3, 1, 2]  # scores 0.25, 1.0, 0.278
    mixed = weighted_ranks(values, objectives, {"accuracy": 0.2, "training_time": 0.4, "model_size": 0.4})
    assert mixed.tolist() == [2, 1, 3]  # scores 0.4, 0.8, 0.342


def test_weighted_ranks_follow_the_column_order_of_the_objectives():
    # Same trials, columns in efficiency_focused's order: ranks must not depend on the order.
    values = np.array([[10.0, 5.0, 0.60], [1.0, 1.0, 0.55], [5.0, 9.0, 0.58]])
    objectives = ["training_time", "model_size", "accuracy"]
    assert weighted_ranks(values, objectives, {"accuracy": 1.0}).tolist() == [1, 3, 2]
    assert weighted_ranks(values, objectives, {"training_time": 1.0}).tolist() == [3, 1, 2]


def test_weighted_ranks_ties_and_edge_cases():
    objectives = ["accuracy", "model_size"]
    values = np.array([[0.5, 3.0], [0.5, 1.0], [0.5, 2.0]])  # all tie on accuracy
    assert weighted_ranks(values, objectives, {"accuracy": 1.0, "model_size": 1.0}).tolist() == [3, 1, 2]
    # A full tie keeps the input order (stable).
    assert weighted_ranks(values[:, :1], ["accuracy"], {"accuracy": 1.0}).tolist() == [1, 2, 3]
    assert weighted_ranks(np.empty((0, 2)), objectives, {"accuracy": 1.0}).tolist() == []
    one = weighted_ranks(np.array([[0.7, 4.0]]), objectives, {"accuracy": 1.0})
    assert one.tolist() == [1]


def test_the_trainer_probes_after_the_first_batch_and_after_probe_batches(synthetic_windows, small_params):
    trainer = make_trainer(synthetic_windows, small_params, n_train=1000)
    batches = -(-1000 // small_params["batch_size"])
    assert batches > PROBE_AFTER[-1]
    calls = []
    trainer.fit(2, on_probe=lambda seconds, timed: calls.append((seconds, timed)))
    assert [timed for _, timed in calls] == list(PROBE_AFTER)  # in the first epoch only
    assert all(seconds > 0 for seconds, _ in calls)
