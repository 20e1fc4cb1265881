"""cnn-lstm-hpo: multi-objective hyperparameter optimization of CNN+LSTM market models."""

from .config import OptimizationConfig, create_optimization_config
from .errors import HPOError
from .model import HybridCNNLSTM, ModelConfig, model_size_mb
from .study import MultiObjectiveOptimizer
from .train import CNNLSTMTrainer, IntegratedCNNLSTMTrainer

__all__ = [
    "CNNLSTMTrainer",
    "HPOError",
    "HybridCNNLSTM",
    "IntegratedCNNLSTMTrainer",
    "ModelConfig",
    "MultiObjectiveOptimizer",
    "OptimizationConfig",
    "create_optimization_config",
    "model_size_mb",
]
