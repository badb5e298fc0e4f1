#!/usr/bin/env python3
"""Sends greedy completions whose token-id prompts share long prefixes (three system prompts, each
with many questions, some repeated whole) to a server, in waves and then all at once, and prints
one JSON line of the completions (text, and each token's log-probability) in request order, so
that a run with prefix caching and one without can be compared (`--compare A B` does: identical
texts, and where they differ, how far the log-probabilities of the tokens before the first
difference are apart, which tells a near-tie flipped by rounding from a wrong cache).

Usage: python3 Scripts/check-prefix-cache.py http://127.0.0.1:8000 [vocabulary] [--one-at-a-time]
"""
import json
import random
import sys
import threading
import urllib.request


def complete(url, prompt):
    body = json.dumps({"prompt": prompt, "max_tokens": 12, "temperature": 0, "ignore_eos": True, "logprobs": 1}).encode()
    request = urllib.request.Request(url + "/v1/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        choice = json.load(response)["choices"][0]
        return {"text": choice["text"], "tokens": choice["logprobs"]["tokens"], "logprobs": choice["logprobs"]["token_logprobs"]}


def compare(first, second):
    a, b = json.load(open(first)), json.load(open(second))
    differing = [i for i in range(len(a)) if a[i]["text"] != b[i]["text"]]
    gap = 0.0
    for x, y in zip(a, b):
        for tx, ty, lx, ly in zip(x["tokens"], y["tokens"], x["logprobs"], y["logprobs"]):
            if tx != ty:
                break
            gap = max(gap, abs(lx - ly))
    print(f"{len(a) - len(differing)} of {len(a)} identical; differing {differing}; "
          f"largest log-probability gap before a difference {gap:.4f}")


def main():
    if sys.argv[1] == "--compare":
        compare(sys.argv[2], sys.argv[3])
        return
    url = sys.argv[1]
    vocabulary = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 2000
    one_at_a_time = "--one-at-a-time" in sys.argv
    rng = random.Random(7)
    systems = [[rng.randrange(vocabulary) for _ in range(rng.randrange(40, 300))] for _ in range(3)]
    prompts = []
    for index in range(48):
        question = [rng.randrange(vocabulary) for _ in range(rng.randrange(1, 40))]
        prompts.append(prompts[-1] if index % 4 == 3 else systems[index % 3] + question)
    texts = [None] * len(prompts)
    if one_at_a_time:
        print(json.dumps([complete(url, prompt) for prompt in prompts]))
        return
    # In waves of six, so that later ones find what earlier ones left...
    for start in range(0, 24, 6):
        threads = [threading.Thread(target=lambda i=i: texts.__setitem__(i, complete(url, prompts[i]))) for i in range(start, start + 6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    # ...and the rest all at once, sharing blocks while they run.
    threads = [threading.Thread(target=lambda i=i: texts.__setitem__(i, complete(url, prompts[i]))) for i in range(24, 48)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(texts))


if __name__ == "__main__":
    main()
