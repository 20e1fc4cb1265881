"""Memory of the windows: views into the scaled bars (what trials use) vs a copy of every window.

Each arm runs in its own fresh process so its peak resident memory is its own: "views" builds the
splits as the study does; "copies" builds them and then materialises every window (N, L, F), which
is what the windows cost before they became views. Prints both peaks, the bytes the windows hold,
and the ratios.

    python benchmarks/window_memory.py [--sequence-length 30] [--scenario default]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys


def measure(arm: str, scenario: str, sequence_length: int) -> dict[str, float]:
    from cnn_lstm_hpo.config import build_config
    from cnn_lstm_hpo.windows import SPLITS, prepare_windows

    config = build_config(scenario, {"data": {"sequence_length": sequence_length}})
    data, _ = prepare_windows(config.data, config.symbols)
    splits = [getattr(data, s) for s in SPLITS]
    if arm == "copies":
        held = [s.x for s in splits]  # every window as its own L x F block
        window_bytes = sum(t.numel() * t.element_size() for t in held)
    else:
        window_bytes = sum(s.rows.numel() * s.rows.element_size() + s.ends.numel() * 8 for s in splits)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"samples": sum(len(s) for s in splits), "window_mib": window_bytes / 2**20, "peak_rss_mib": peak_kib / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--sequence-length", type=int, default=30)
    parser.add_argument("--arm", choices=["views", "copies"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(measure(args.arm, args.scenario, args.sequence_length)))
        return
    results = {}
    for arm in ("views", "copies"):
        out = subprocess.run(
            [sys.executable, __file__, "--arm", arm, "--scenario", args.scenario,
             "--sequence-length", str(args.sequence_length)],
            check=True, capture_output=True, text=True,
        ).stdout
        results[arm] = json.loads(out.strip().splitlines()[-1])
    views, copies = results["views"], results["copies"]
    print(f"scenario {args.scenario}, sequence_length {args.sequence_length}, {views['samples']} windows")
    print(f"{'arm':8} {'windows MiB':>12} {'peak RSS MiB':>13}")
    for arm, r in results.items():
        print(f"{arm:8} {r['window_mib']:12.1f} {r['peak_rss_mib']:13.1f}")
    print(f"copies / views: windows {copies['window_mib'] / views['window_mib']:.1f}x, "
          f"peak RSS {copies['peak_rss_mib'] / views['peak_rss_mib']:.2f}x")


if __name__ == "__main__":
    main()
