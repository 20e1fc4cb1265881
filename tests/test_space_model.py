"""Sampling the search space and building/running the hybrid model for every kind of sample."""

from __future__ import annotations

import itertools

import optuna
import pytest
import torch
from torch import nn

from cnn_lstm_hpo.config import create_optimization_config, validate_config
from cnn_lstm_hpo.model import CausalConv, HybridCNNLSTM, ModelConfig, model_size_mb
from cnn_lstm_hpo.space import DEFAULT_SEARCH_SPACE, PARAM_NAMES, decode_param, decode_params, suggest

N_FEATURES = 10
N_SAMPLES = 48


@pytest.fixture(scope="module")
def full_space():
    # The guide's full space, as the default config holds it.
    space = create_optimization_config().search_space
    assert {name: spec.model_dump() for name, spec in space.items()} == DEFAULT_SEARCH_SPACE
    return space


@pytest.fixture(scope="module")
def sampled(full_space):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=7))
    out = []
    for _ in range(N_SAMPLES):
        trial = study.ask()
        out.append((trial, suggest(trial, full_space)))
    return out


def model_config(params: dict, num_classes: int = 2) -> ModelConfig:
    return ModelConfig.from_params(params, n_features=N_FEATURES, num_classes=num_classes)


def run_forward_backward(cfg: ModelConfig, batch: int, seq_len: int) -> HybridCNNLSTM:
    model = HybridCNNLSTM(cfg)
    model.train()
    x = torch.randn(batch, seq_len, cfg.n_features)
    logits, ret = model(x)
    assert logits.shape == (batch, cfg.num_classes)
    assert ret.shape == (batch,)
    assert torch.isfinite(logits).all() and torch.isfinite(ret).all()
    loss = nn.functional.cross_entropy(logits, torch.arange(batch) % cfg.num_classes) + ret.pow(2).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
    return model


# --- sampling -------------------------------------------------------------------------------------


def test_samples_cover_every_categorical_choice(sampled):
    for name, spec in DEFAULT_SEARCH_SPACE.items():
        if spec["type"] != "categorical":
            continue
        seen = {tuple(p[name]) if isinstance(p[name], list) else p[name] for _, p in sampled}
        wanted = {tuple(c) if isinstance(c, list) else c for c in spec["choices"]}
        assert seen == wanted, name


def test_samples_respect_ranges(sampled):
    for _, p in sampled:
        assert set(p) == set(PARAM_NAMES)
        assert 1e-5 <= p["learning_rate"] <= 1e-2
        assert 1e-6 <= p["weight_decay"] <= 1e-3
        assert 0.1 <= p["dropout_rate"] <= 0.5
        assert p["lstm_num_layers"] in (1, 2, 3, 4)
        assert isinstance(p["cnn_filter_sizes"], list)
        assert all(isinstance(k, int) for k in p["cnn_filter_sizes"])
    assert {p["lstm_num_layers"] for _, p in sampled} == {1, 2, 3, 4}


def test_filter_sizes_travel_through_optuna_as_strings(sampled):
    for trial, params in sampled:
        stored = trial.params["cnn_filter_sizes"]
        assert isinstance(stored, str)
        assert stored == ",".join(str(k) for k in params["cnn_filter_sizes"])
        assert decode_param("cnn_filter_sizes", stored) == params["cnn_filter_sizes"]
        assert decode_params(trial.params) == params
    assert decode_param("cnn_filter_sizes", "3,5,7") == [3, 5, 7]
    assert decode_param("cnn_num_filters", 64) == 64


def test_stored_trial_params_decode_after_tell(full_space):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    params = suggest(trial, full_space)
    study.tell(trial, 0.5)
    frozen = study.trials[0]
    assert decode_params(frozen.params) == params
    # The distribution Optuna stores lists the encoded choices.
    assert "3,5,7" in frozen.distributions["cnn_filter_sizes"].choices


def test_a_user_space_is_sampled_within_its_choices():
    space = validate_config(
        {"search_space": {"cnn_filter_sizes": {"type": "categorical", "choices": [[2, 4]]}}}, "test"
    ).search_space
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(5):
        assert suggest(study.ask(), space)["cnn_filter_sizes"] == [2, 4]


# --- the model on every kind of sample ---------------------------------------------------------------


def test_every_sampled_configuration_runs_forward_and_backward(sampled):
    torch.manual_seed(0)
    big = 0
    for i, (_, params) in enumerate(sampled):
        cfg = model_config(params, num_classes=2 + i % 2)
        heavy = cfg.attention_dim >= 512 or cfg.lstm_hidden_dim >= 256
        big += heavy
        # Big configurations are checked on a smaller batch to keep the test fast.
        run_forward_backward(cfg, *((2, 8) if heavy else (4, 16)))
    assert big >= 5  # the sample does include large models


def test_largest_configuration_runs():
    cfg = ModelConfig(N_FEATURES, 3, 256, (3, 7, 11, 15), 12, 512, 4, True, 0.5)
    model = run_forward_backward(cfg, 2, 8)
    assert model.cfg.attention_dim == 1032  # 1024 channels rounded up to a multiple of 12
    params = sum(p.numel() for p in model.parameters())
    assert params == _param_count(cfg) == 30_652_732  # worked out by hand
    assert model_size_mb(model) == pytest.approx(params * 4 / 2**20, rel=1e-12)


@pytest.mark.parametrize(
    "filters, sizes",
    list(itertools.product([32, 64, 128, 256], DEFAULT_SEARCH_SPACE["cnn_filter_sizes"]["choices"])),
)
def test_every_filters_sizes_heads_combination(filters, sizes):
    torch.manual_seed(0)
    for heads in DEFAULT_SEARCH_SPACE["cnn_attention_heads"]["choices"]:
        cfg = ModelConfig(N_FEATURES, 2, filters, tuple(sizes), heads, 8, 1, False, 0.1)
        assert cfg.attention_dim % heads == 0
        assert cfg.conv_channels <= cfg.attention_dim < cfg.conv_channels + heads
        model = run_forward_backward(cfg, 2, 8)
        if cfg.conv_channels % heads:
            assert isinstance(model.project, nn.Linear)
        else:
            assert isinstance(model.project, nn.Identity)


def test_non_dividing_head_counts_are_exercised():
    combos = [
        (f, len(s), h)
        for f in (32, 64, 128, 256)
        for s in DEFAULT_SEARCH_SPACE["cnn_filter_sizes"]["choices"]
        for h in (4, 8, 12, 16)
        if (f * len(s)) % h
    ]
    assert (32, 4, 12) in combos  # 128 channels, 12 heads
    assert len(combos) >= 4


def test_filter_sizes_longer_than_the_window():
    cfg = ModelConfig(N_FEATURES, 2, 8, (3, 7, 11, 15), 4, 8, 1, False, 0.0)
    run_forward_backward(cfg, 2, 5)  # causal padding keeps the length even for kernel 15 > 5 steps


def test_eval_mode_is_deterministic():
    torch.manual_seed(0)
    model = HybridCNNLSTM(ModelConfig(N_FEATURES, 2, 16, (2, 3), 2, 16, 2, True, 0.5)).eval()
    x = torch.randn(4, 16, N_FEATURES)
    with torch.no_grad():
        a, b = model(x), model(x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def _without_attention(model: HybridCNNLSTM) -> HybridCNNLSTM:
    # Zero attention output: each LSTM input step then sees only its own causal conv receptive field,
    # so what a step of the representation has read is visible from the bars that move it.
    with torch.no_grad():
        model.attention.out_proj.weight.zero_()
        model.attention.out_proj.bias.zero_()
    return model.eval()


@pytest.mark.parametrize("layers", [1, 2])
def test_bidirectional_representation_reads_the_whole_window_both_ways(layers):
    torch.manual_seed(layers)
    hidden = 8
    model = _without_attention(HybridCNNLSTM(ModelConfig(N_FEATURES, 2, 8, (2, 3), 2, hidden, layers, True, 0.0)))
    x = torch.randn(3, 20, N_FEATURES)
    first_changed, last_changed = x.clone(), x.clone()
    first_changed[:, 0] += 5.0
    last_changed[:, -1] += 5.0
    with torch.no_grad():
        base, first, last = (model.encode(v) for v in (x, first_changed, last_changed))
    assert base.shape == (3, 2 * hidden)
    # The backward direction ends at the first bar: it must have read it (and the last one too).
    assert not torch.allclose(base[:, hidden:], first[:, hidden:])
    assert not torch.allclose(base[:, hidden:], last[:, hidden:])
    # The forward direction ends at the decision bar and reads every bar before it.
    assert not torch.allclose(base[:, :hidden], first[:, :hidden])
    assert not torch.allclose(base[:, :hidden], last[:, :hidden])


def test_unidirectional_representation_is_the_state_at_the_decision_bar():
    torch.manual_seed(0)
    model = _without_attention(HybridCNNLSTM(ModelConfig(N_FEATURES, 2, 8, (2, 3), 2, 8, 2, False, 0.0)))
    x = torch.randn(3, 20, N_FEATURES)
    with torch.no_grad():
        h = model.norm(model.project(torch.cat([nn.functional.gelu(c(x.transpose(1, 2))) for c in model.convs], 1).transpose(1, 2)))
        out, _ = model.lstm(h)
        assert torch.allclose(model.encode(x), out[:, -1], atol=1e-6)


# --- model size -------------------------------------------------------------------------------------


def _param_count(cfg: ModelConfig) -> int:
    """Parameters of the hybrid counted by hand from its layers."""
    f, n, sizes = cfg.n_features, cfg.cnn_num_filters, cfg.cnn_filter_sizes
    c, d, h = cfg.conv_channels, cfg.attention_dim, cfg.lstm_hidden_dim
    total = sum(f * n * k + n for k in sizes)  # convolutions
    total += 0 if d == c else c * d + d  # projection
    total += 3 * d * d + 3 * d + d * d + d  # attention in/out projections
    total += 2 * d  # layer norm
    dirs = 2 if cfg.lstm_bidirectional else 1
    for layer in range(cfg.lstm_num_layers):
        inp = d if layer == 0 else h * dirs
        total += dirs * (4 * h * inp + 4 * h * h + 8 * h)
    out = h * dirs
    total += out * cfg.num_classes + cfg.num_classes + out + 1  # heads
    return total


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(N_FEATURES, 2, 16, (2, 3), 2, 16, 1, False, 0.1),
        ModelConfig(N_FEATURES, 3, 32, (3, 5, 7, 11), 12, 64, 2, True, 0.2),
        ModelConfig(N_FEATURES, 2, 64, (3, 5, 7), 8, 128, 3, False, 0.3),
    ],
)
def test_model_size_is_parameter_and_buffer_bytes(cfg):
    model = HybridCNNLSTM(cfg)
    params = sum(p.numel() for p in model.parameters())
    assert params == _param_count(cfg)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    assert model_size_mb(model) == pytest.approx((params * 4 + buffers) / 2**20, rel=1e-12)


def test_model_size_counts_buffers():
    norm = nn.BatchNorm1d(10)  # 20 float params; buffers: 2 x 10 floats + one int64 counter
    assert model_size_mb(norm) == pytest.approx((20 * 4 + 20 * 4 + 8) / 2**20, rel=1e-12)


def test_model_size_counts_dtype_width():
    model = HybridCNNLSTM(ModelConfig(N_FEATURES, 2, 16, (2, 3), 2, 16, 1, False, 0.1))
    size32 = model_size_mb(model)
    assert model_size_mb(model.double()) == pytest.approx(2 * size32)


def test_bigger_configuration_is_bigger():
    small = HybridCNNLSTM(ModelConfig(N_FEATURES, 2, 32, (3, 5, 7), 4, 64, 1, False, 0.1))
    sizes = [model_size_mb(small)]
    for change in (
        dict(cnn_num_filters=64),
        dict(cnn_filter_sizes=(3, 5, 7, 11)),
        dict(lstm_hidden_dim=128),
        dict(lstm_num_layers=2),
        dict(lstm_bidirectional=True),
    ):
        bigger = HybridCNNLSTM(ModelConfig(**{**small.cfg.to_dict(), **change}))
        assert model_size_mb(bigger) > sizes[0], change


# --- causality -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", [1, 2, 3, 7, 15])
def test_causal_conv_output_at_t_ignores_inputs_after_t(kernel):
    torch.manual_seed(kernel)
    conv = CausalConv(4, 6, kernel)
    x = torch.randn(3, 4, 20)
    y = conv(x)
    assert y.shape == (3, 6, 20)
    for t in (0, 5, 12, 18):
        changed = x.clone()
        changed[:, :, t + 1 :] = torch.randn_like(changed[:, :, t + 1 :]) * 100
        y2 = conv(changed)
        assert torch.equal(y[:, :, : t + 1], y2[:, :, : t + 1]), t
        assert not torch.allclose(y[:, :, t + 1 :], y2[:, :, t + 1 :])  # later outputs do change


def test_causal_conv_output_at_t_uses_input_at_t():
    torch.manual_seed(0)
    conv = CausalConv(2, 3, 5)
    x = torch.randn(1, 2, 10)
    changed = x.clone()
    changed[:, :, 6] += 1.0
    diff = (conv(changed) - conv(x)).abs().sum(dim=1)[0]
    assert torch.all(diff[:6] == 0)
    assert torch.all(diff[6:] > 0)  # steps 6..9 see it (kernel 5 reaches back 4 steps)
