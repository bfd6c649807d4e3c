#!/usr/bin/env python3
"""A synthetic Squid native access.log for the Worldnet example, until
`cuttle trace generate` is there: Zipf popularity over OBJECTS documents,
heavy-tailed sizes (log-normal body, Pareto tail), Poisson arrivals, and
clients spread over the mesh's client ranges (9 POPs, 4 border routers for
external clients). Deterministic for a given seed.

    python3 examples/worldnet/make_trace.py --objects 50000 --requests 200000 > /tmp/worldnet.log
"""

import argparse
import itertools
import math
import random
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=50_000)
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--zipf", type=float, default=0.8, help="popularity exponent")
    ap.add_argument("--rate", type=float, default=200.0, help="requests per second")
    ap.add_argument("--seed", type=int, default=18)
    args = ap.parse_args()
    rng = random.Random(args.seed)

    def size():
        # 7 % of documents in a Pareto tail from 64 KiB, the rest log-normal
        # around 6 KiB: the shape measured web traces show.
        if rng.random() < 0.07:
            return int(65536 / (1.0 - rng.random()) ** (1 / 1.2))
        return max(64, int(rng.lognormvariate(math.log(6000), 1.2)))

    sizes = [min(size(), 64 << 20) for _ in range(args.objects)]
    # Popularity rank -> a document number scattered over the sites.
    order = list(range(args.objects))
    rng.shuffle(order)
    weights = [1.0 / (rank + 1) ** args.zipf for rank in range(args.objects)]
    cum = list(itertools.accumulate(weights))
    # Client networks: POPs 10.1-9.0.0/16 (80 %), border routers'
    # external clients 172.16-19.0.0/16 (20 %).
    networks = [f"10.{i}" for i in range(1, 10)] + [f"172.{i}" for i in range(16, 20)]
    net_weights = [80 / 9] * 9 + [5] * 4
    t = 1_000_000_000.0
    out = sys.stdout
    picks = rng.choices(order, cum_weights=cum, k=args.requests)
    nets = rng.choices(networks, weights=net_weights, k=args.requests)
    for doc, net in zip(picks, nets):
        t += rng.expovariate(args.rate)
        client = f"{net}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        url = f"http://site{doc % 997}.example/doc{doc}.html"
        out.write(
            f"{t:.3f} 100 {client} TCP_MISS/200 {sizes[doc]} GET {url} - "
            f"HIER_DIRECT/192.0.2.1 text/html\n"
        )


if __name__ == "__main__":
    main()
