#!/usr/bin/env python3
"""scale_model.py -- the modelled speedup table of docs/SCALE.md.

Rebuilds sim/many.c's static schedule for a hypothetical job (units (trace, layer,
KV head), cost T^2 x query heads x (1 + D/8 when rows are rebuilt), largest first to
the least loaded rank, lowest rank on a tie) and prints, per rank count, the
makespan's share of the total and the modelled wall time

    t(p) = fixed_per_trace * n_traces          (every rank opens every trace; rank 0
                                                reopens each to write)
         + sec_per_cost * max_rank_load(p)     (the units, on the slowest rank)

with sec_per_cost and fixed_per_trace measured on this machine (docs/SCALE.md says
how).  The reduction (n_traces sums of a few MB, log2 p steps) is left out: it is
milliseconds against minutes.  Python 3 only, no packages.

usage: scale_model.py --layers 32 --kv 32 --group 1 --dim 128 --rebuilt 1
                      --traces 100 --tmin 1024 --tmax 4096
                      --sec-per-cost 3.1e-9 --fixed 0.05 [--layer-units]
"""
import argparse
import heapq


def units(args):
    out = []
    for i in range(args.traces):
        # deterministic spread of prompt lengths between tmin and tmax
        T = args.tmin + (args.tmax - args.tmin) * ((i * 37) % args.traces) // max(args.traces - 1, 1)
        factor = 1 + args.dim / 8 if args.rebuilt else 1
        if args.layer_units:
            out += [T * T * args.kv * args.group * factor] * args.layers
        else:
            out += [T * T * args.group * factor] * (args.layers * args.kv)
    return out


def makespan(costs, p):
    order = sorted(range(len(costs)), key=lambda i: (-costs[i], i))
    heap = [(0.0, r) for r in range(p)]   # (load, rank): least loaded, lowest rank
    for i in order:
        load, r = heapq.heappop(heap)
        heapq.heappush(heap, (load + costs[i], r))
    return max(load for load, _ in heap)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--kv", type=int, required=True, help="KV heads per layer")
    ap.add_argument("--group", type=int, default=1, help="query heads per KV head")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--rebuilt", type=int, default=1, help="1: row-free traces")
    ap.add_argument("--traces", type=int, default=100)
    ap.add_argument("--tmin", type=int, default=1024)
    ap.add_argument("--tmax", type=int, default=4096)
    ap.add_argument("--sec-per-cost", type=float, required=True)
    ap.add_argument("--fixed", type=float, required=True, help="seconds per trace, per rank")
    ap.add_argument("--layer-units", action="store_true", help="a layer-scoped policy")
    ap.add_argument("--ranks", default="1,8,16,32,64,128,256,512")
    a = ap.parse_args()
    costs = units(a)
    total = sum(costs)
    t1 = a.fixed * a.traces + a.sec_per_cost * total
    print(f"{len(costs)} units, {total:.3g} cost units, 1 rank: {t1 / 60:.1f} min")
    print("| ranks | slowest rank's share | modelled time | speedup | efficiency |")
    print("|---:|---:|---:|---:|---:|")
    for p in (int(x) for x in a.ranks.split(",")):
        m = makespan(costs, p)
        t = a.fixed * a.traces + a.sec_per_cost * m
        print(f"| {p} | {m / total:.4f} (ideal {1 / p:.4f}) | {t:.0f} s | {t1 / t:.0f}x | "
              f"{t1 / t / p:.0%} |")


if __name__ == "__main__":
    main()
