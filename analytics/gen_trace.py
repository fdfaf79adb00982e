#!/usr/bin/env python3
"""Write a Mooncake-shaped JSONL trace, deterministically from a seed (docs/analytics.md).

    python3 analytics/gen_trace.py --requests 1000000 --seed 1 --out /tmp/gen-1m.jsonl

Each line is {"timestamp": ms, "input_length": n, "output_length": n, "hash_ids": [...]},
512 tokens per hash id, in timestamp order. The shape follows the Mooncake conversation
trace: multi-turn conversations whose every turn repeats the previous turn's prompt and
answer and adds a new message (so turn k's ids extend turn k-1's), a few shared system
prompts at the start of every prompt, about 3.4 requests/s, and 24 blocks per request on
average. The same arguments always give the same file (Python's random.Random(seed)).
"""
import argparse
import random
import sys

BT = 512


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=12000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="-")
    ap.add_argument("--rate", type=float, default=3.4, help="requests per second")
    ap.add_argument("--active", type=int, default=400, help="conversations in progress")
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    out = sys.stdout if a.out == "-" else open(a.out, "w", buffering=1 << 20)
    next_id = 0

    def new_ids(n):
        nonlocal next_id
        r = list(range(next_id, next_id + n))
        next_id += n
        return r

    systems = [new_ids(rnd.randint(1, 4)) for _ in range(8)]
    convs = []  # [ids, tokens, turns left]
    t_ms = 0.0
    for _ in range(a.requests):
        t_ms += rnd.expovariate(a.rate) * 1000.0
        if len(convs) < a.active or rnd.random() < 0.02:
            sp = systems[min(int(rnd.expovariate(0.7)), len(systems) - 1)]
            user = int(rnd.lognormvariate(8.3, 0.9))  # ~4k tokens, long tail
            toks = len(sp) * BT + max(user, 1)
            ids = sp + new_ids((toks + BT - 1) // BT - len(sp))
            c = [ids, toks, rnd.randint(1, 12)]
            convs.append(c)
        else:
            i = rnd.randrange(len(convs))
            c = convs[i]
            # previous answer + new message; the partial last block is recomputed
            add = int(rnd.lognormvariate(6.5, 1.0)) + 1
            whole = c[1] // BT
            toks = c[1] + add
            if toks > 128 * 1024:
                toks = c[1]
            c[0] = c[0][:whole] + new_ids((toks + BT - 1) // BT - whole)
            c[1] = toks
        out_len = max(1, int(rnd.lognormvariate(5.5, 0.8)))
        out.write('{"timestamp": %d, "input_length": %d, "output_length": %d, "hash_ids": [%s]}\n'
                  % (int(t_ms), c[1], out_len, ", ".join(map(str, c[0]))))
        c[2] -= 1
        if c[2] <= 0:
            convs.remove(c)
    if out is not sys.stdout:
        out.close()


if __name__ == "__main__":
    main()
