#!/usr/bin/env python3
"""Reads a `flexpert bench serve --result-file` JSON and the scale events (seconds from the bench's
start) and prints output throughput per second, the throughput before/during/after each event, and
the longest gap in token output across all requests during each event.

Usage: elastic-timeline.py RESULT.json EVENTS.txt [PLOT.png]   (EVENTS: lines "name start end", bench seconds)
With PLOT.png (needs matplotlib), also draws output tokens per second with the events shaded.
"""
import json
import sys

result = json.load(open(sys.argv[1]))
events = [line.split() for line in open(sys.argv[2]) if line.strip()]
events = [(name, float(start), float(end)) for name, start, end in events]

tokens = []   # (time, count) of every token event
gaps = []     # (gap start, gap end) between consecutive token events of a request
for start, ttft, itls, success in zip(result["start_times"], result["ttfts"], result["itls"],
                                      [e == "" for e in result["errors"]]):
    if not success:
        continue
    t = start + ttft
    tokens.append(t)
    for itl in itls:
        gaps.append((t, t + itl))
        t += itl
        tokens.append(t)
end = max(tokens)
windows = [0] * (int(end) + 1)
for t in tokens:
    windows[int(t)] += 1

def rate(lo, hi):
    lo, hi = max(lo, 0), min(hi, end)
    return sum(1 for t in tokens if lo <= t < hi) / (hi - lo) if hi > lo else 0.0

print("failed requests:", sum(1 for e in result["errors"] if e))
print("output tokens per 1-second window:", " ".join(str(w) for w in windows))
for name, start, stop in events:
    longest = max((b - a for a, b in gaps if a < stop and b > start), default=0.0)
    print(f"{name}: {stop - start:.2f} s; tok/s before {rate(start - 3, start):.0f}, during {rate(start, stop):.0f}, "
          f"after {rate(stop, stop + 3):.0f}; longest token gap overlapping it {longest * 1000:.0f} ms")

if len(sys.argv) > 3:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plot
    figure, axes = plot.subplots(figsize=(10, 4))
    axes.plot(range(len(windows)), windows, drawstyle="steps-post", color="black")
    for name, start, stop in events:
        axes.axvspan(start, max(stop, start + 0.2), alpha=0.3, label=name)
    axes.set_xlabel("seconds since the benchmark started")
    axes.set_ylabel("output tokens per second")
    axes.legend()
    figure.tight_layout()
    figure.savefig(sys.argv[3], dpi=100)
