"""How much of a planted edge a flexible learner can recover from the product's inputs, by data size.

The synthetic source (``synthetic:edge=E``) plants a direction rule of Bayes accuracy E on the last
return (synthetic.py). For each number of bars a symbol and each seed, the product's windows are
built as a study builds them (4 symbols, chronological 70/15/15 split, the scaler fitted on
training), and scikit-learn's HistGradientBoostingClassifier is fitted on the training windows with
three inputs: the one input the rule reads (the last bar's 1-bar log return), the last bar's
features, and the whole window (sequence length x features, what the network sees). Prints test
balanced accuracy: the ceiling a model's edge over the baselines can reach at that data size.

    python benchmarks/planted_edge_learnability.py [--edge 0.55] [--bars 4000 16000] [--seeds 3]
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import balanced_accuracy_score

from cnn_lstm_hpo.config import validate_data_config
from cnn_lstm_hpo.features import FEATURE_NAMES
from cnn_lstm_hpo.windows import Split, prepare_windows

INPUTS = {
    "last return": lambda w: w[:, -1, [FEATURE_NAMES.index("log_return_1")]],
    "last bar": lambda w: w[:, -1, :],
    "whole window": lambda w: w.reshape(len(w), -1),
}


def test_scores(edge: float, bars: int, seed: int, sequence_length: int) -> dict[str, float]:
    cfg = validate_data_config({"source": f"synthetic:edge={edge},seed={seed},bars={bars}",
                                "sequence_length": sequence_length, "start": None})
    data, _ = prepare_windows(cfg, None)

    def windows(split: Split) -> np.ndarray:
        return split.windows(slice(None)).numpy()

    train, test = windows(data.train), windows(data.test)
    scores = {}
    for name, take in INPUTS.items():
        model = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.05, random_state=seed)
        model.fit(take(train), data.train.y_class.numpy())
        scores[name] = balanced_accuracy_score(data.test.y_class.numpy(), model.predict(take(test)))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edge", type=float, default=0.55)
    parser.add_argument("--bars", type=int, nargs="+", default=[4000, 16000], help="bars per symbol (4 symbols)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sequence-length", type=int, default=20, help="as signal_power.py's study")
    args = parser.parse_args()
    for bars in args.bars:
        rows = [test_scores(args.edge, bars, seed, args.sequence_length) for seed in range(args.seeds)]
        shown = "; ".join(f"{name} {np.mean([r[name] for r in rows]):.3f} ({min(r[name] for r in rows):.3f}-"
                          f"{max(r[name] for r in rows):.3f})" for name in INPUTS)
        print(f"edge {args.edge}, {bars} bars a symbol, {args.seeds} seeds: test balanced accuracy of a gradient-boosted "
              f"tree on {shown} (Bayes {args.edge})", flush=True)


if __name__ == "__main__":
    main()
