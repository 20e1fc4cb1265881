"""The guide's hybrid: parallel 1-D convolutions -> multi-head self-attention -> (bi)LSTM -> two heads."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    n_features: int
    num_classes: int
    cnn_num_filters: int
    cnn_filter_sizes: tuple[int, ...]
    cnn_attention_heads: int
    lstm_hidden_dim: int
    lstm_num_layers: int
    lstm_bidirectional: bool
    dropout_rate: float

    @classmethod
    def from_params(cls, params: dict, *, n_features: int, num_classes: int) -> ModelConfig:
        """The architecture part of one trial's hyperparameters."""
        return cls(
            n_features=n_features, num_classes=num_classes, cnn_num_filters=int(params["cnn_num_filters"]),
            cnn_filter_sizes=tuple(int(k) for k in params["cnn_filter_sizes"]),
            cnn_attention_heads=int(params["cnn_attention_heads"]), lstm_hidden_dim=int(params["lstm_hidden_dim"]),
            lstm_num_layers=int(params["lstm_num_layers"]), lstm_bidirectional=bool(params["lstm_bidirectional"]),
            dropout_rate=float(params["dropout_rate"]),
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def conv_channels(self) -> int:
        return self.cnn_num_filters * len(self.cnn_filter_sizes)

    @property
    def attention_dim(self) -> int:
        # nn.MultiheadAttention needs heads | embed_dim: round the conv channels up to the next
        # multiple of the head count and project, so every (filters, sizes, heads) combination works.
        return math.ceil(self.conv_channels / self.cnn_attention_heads) * self.cnn_attention_heads


class CausalConv(nn.Module):
    """Conv1d padded on the left only: output step t sees input steps <= t, length is kept."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.pad = kernel_size - 1
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, T) -> (B, C_out, T)
        return self.conv(F.pad(x, (self.pad, 0)))


class HybridCNNLSTM(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.convs = nn.ModuleList(CausalConv(cfg.n_features, cfg.cnn_num_filters, k) for k in cfg.cnn_filter_sizes)
        dim = cfg.attention_dim
        self.project = nn.Linear(cfg.conv_channels, dim) if dim != cfg.conv_channels else nn.Identity()
        self.attention = nn.MultiheadAttention(dim, cfg.cnn_attention_heads, dropout=cfg.dropout_rate, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.lstm = nn.LSTM(
            dim, cfg.lstm_hidden_dim, num_layers=cfg.lstm_num_layers, batch_first=True,
            bidirectional=cfg.lstm_bidirectional, dropout=cfg.dropout_rate if cfg.lstm_num_layers > 1 else 0.0,
        )
        out = cfg.lstm_hidden_dim * (2 if cfg.lstm_bidirectional else 1)
        self.dropout = nn.Dropout(cfg.dropout_rate)
        self.class_head = nn.Linear(out, cfg.num_classes)
        self.return_head = nn.Linear(out, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The representation the heads read: (B, T, F) -> (B, H * directions)."""
        h = x.transpose(1, 2)  # (B, F, T)
        h = torch.cat([F.gelu(conv(h)) for conv in self.convs], dim=1)  # (B, filters*sizes, T)
        h = self.project(h.transpose(1, 2))  # (B, T, D)
        attended, _ = self.attention(h, h, h, need_weights=False)
        h = self.norm(h + attended)  # residual keeps the conv features when attention is unhelpful
        _, (h_n, _) = self.lstm(h)  # h_n: (layers * directions, B, H)
        # The top layer's final state of each direction: the forward pass ends at the decision bar,
        # the backward pass ends at the window's first bar, so both have read the whole window.
        # (out[:, -1] would give the backward direction after one bar only.)
        directions = 2 if self.cfg.lstm_bidirectional else 1
        return torch.cat(list(h_n[-directions:]), dim=-1)  # (B, H * directions)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        last = self.dropout(self.encode(x))
        return self.class_head(last), self.return_head(last).squeeze(-1)  # (B, C), (B,)


def model_size_mb(model: nn.Module) -> float:
    """(parameter bytes + buffer bytes) / 2**20, as the guide defines it."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    total += sum(b.numel() * b.element_size() for b in model.buffers())
    return total / 2**20
