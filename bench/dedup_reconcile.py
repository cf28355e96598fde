"""Times DuplicateService.reconcile_job on the in-memory store (docs/imaging.md, "Reconciliation: cost").

    .venv/bin/python -m bench.dedup_reconcile --pairs 100000 --star 10000

Prints, per case, how long writing the entries took and how long reconcile_job took (wall clock, and the
process's CPU time: the machine may be shared), and checks the groups. The entries are written as registrations
would have left them (`racing`: without any match, so reconcile_job must find every pair); see
tests/dedup/synthetic.py.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from shared.dedup import DuplicateService, InMemoryDuplicateIndexStore
from tests.dedup.synthetic import near_pair_entries, put_all, star_entries


def _case(name: str, entries: object, expected_groups: int, expected_size: int) -> None:
    store = InMemoryDuplicateIndexStore()
    started = time.perf_counter()
    count = put_all(store, "tenant", entries)  # type: ignore[arg-type]
    written = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    groups = DuplicateService(store).reconcile_job("tenant", "job", racing_since=None)
    took, cpu = time.perf_counter() - started, time.process_time() - cpu
    sizes = {len(g.members) for g in groups}
    ok = len(groups) == expected_groups and sizes == {expected_size}
    print(
        f"{name:<26} {count:>8,} entries  written {written:5.1f} s  "
        f"reconcile_job {took:5.1f} s (CPU {cpu:5.1f} s)  ok={ok}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=100_000, help="near-duplicate pairs (0: skip)")
    parser.add_argument("--star", type=int, default=10_000, help="members of the star group (0: skip)")
    args = parser.parse_args(argv)
    if args.pairs:
        for racing in (False, True):
            _case(
                f"{args.pairs:,} pairs{' (racing)' if racing else ''}",
                near_pair_entries("job", args.pairs, racing=racing),
                args.pairs,
                2,
            )
    if args.star:
        _case(f"star of {args.star:,}", star_entries("job", args.star), 1, args.star)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
