#!/usr/bin/env python3
"""Reads a `flexpert bench serve --result-file` JSON and the cluster's size sampled over time
(lines "seconds size", seconds from the bench's start) and prints, second by second, the output
tokens and the size; with PLOT.png (needs matplotlib) draws both.

Usage: autoscale-timeline.py RESULT.json SIZES.txt [PLOT.png]
"""
import json
import sys

result = json.load(open(sys.argv[1]))
per_second = result["output_tokens_per_second"]
samples = [(float(t), int(s)) for t, s in (line.split() for line in open(sys.argv[2]) if len(line.split()) == 2)]
seconds = max(len(per_second), int(samples[-1][0]) + 1 if samples else 0)

def size_at(second):
    known = [s for t, s in samples if t <= second + 0.5]
    return known[-1] if known else (samples[0][1] if samples else 0)

print("failed requests:", sum(1 for e in result["errors"] if e))
print("second  output tok/s  ranks")
for second in range(seconds):
    print(f"{second:6d}  {per_second[second] if second < len(per_second) else 0:12d}  {size_at(second):5d}")

if len(sys.argv) > 3:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plot
    figure, tokens = plot.subplots(figsize=(10, 4))
    tokens.plot(range(len(per_second)), per_second, drawstyle="steps-post", color="black", label="output tokens per second")
    tokens.set_xlabel("seconds since the benchmark started")
    tokens.set_ylabel("output tokens per second")
    ranks = tokens.twinx()
    ranks.plot([t for t, _ in samples], [s for _, s in samples], drawstyle="steps-post", color="tab:blue", label="ranks")
    ranks.set_ylabel("ranks")
    ranks.set_ylim(0, max(s for _, s in samples) + 1)
    figure.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(sys.argv[3], dpi=100)
