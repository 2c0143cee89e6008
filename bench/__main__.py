"""Benchmarks that report ratios against baselines measured in the same run.

    .venv/bin/python -m bench compare [--seconds 6] [--repetitions 3]  # govflow vs the floor app, 1 and 8 clients
    .venv/bin/python -m bench scale [--sizes 1000,10000,100000]        # inbox and instance list as data grows
    .venv/bin/python -m bench growth [--rounds 1,50,100,200]           # a request's cost as the history grows
    .venv/bin/python -m bench overhead [--seconds 4] [--repetitions 3] # a request that does nothing, vs the floor

SQLite always; PostgreSQL too when GOVFLOW_BENCH_PG is a PostgreSQL URL (its database is emptied and reused).
Servers run on 127.0.0.1 as separate processes; every run is bounded in time and requests.
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    compare = sub.add_parser("compare", help="govflow's REST cycle against the floor app, same run")
    compare.add_argument("--seconds", type=float, default=6.0, help="length of one measurement (default 6)")
    compare.add_argument("--repetitions", type=int, default=3, help="alternating repetitions (default 3)")
    compare.add_argument("--clients", default="1,8", help="client counts (default 1,8)")
    scale = sub.add_parser("scale", help="inbox pages and the instance list at growing sizes")
    scale.add_argument("--sizes", default="1000,10000,100000", help="rows (default 1000,10000,100000)")
    growth = sub.add_parser("growth", help="a completion's cost after N review/revise rounds")
    growth.add_argument("--rounds", default="1,50,100,200", help="rounds (default 1,50,100,200)")
    overhead = sub.add_parser("overhead", help="a request that does nothing, govflow against the floor app")
    overhead.add_argument("--seconds", type=float, default=4.0, help="length of one measurement (default 4)")
    overhead.add_argument("--repetitions", type=int, default=3, help="alternating repetitions (default 3)")
    overhead.add_argument("--clients", default="1,8", help="client counts (default 1,8)")
    args = parser.parse_args(argv)
    if args.command in (None, "compare"):
        from bench import compare as run_compare

        return run_compare.main(getattr(args, "seconds", 6.0), getattr(args, "repetitions", 3),
                                [int(c) for c in getattr(args, "clients", "1,8").split(",")])
    if args.command == "overhead":
        from bench import overhead as run_overhead

        return run_overhead.main(args.seconds, args.repetitions, [int(c) for c in args.clients.split(",")])
    if args.command == "scale":
        from bench import scale as run_scale

        return run_scale.main([int(s) for s in args.sizes.split(",")])
    from bench import growth as run_growth

    return run_growth.main([int(r) for r in args.rounds.split(",")])


if __name__ == "__main__":
    sys.exit(main())
