"""``python -m benchmarks [NAME] [--rows N] [--repeat R]``"""

from __future__ import annotations

import argparse
import sys

from benchmarks.harness import BENCHMARKS, child, load, run


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(argv[1], argv[2], int(argv[3]))
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="ours vs the hand-written baseline"
    )
    parser.add_argument("name", nargs="?", help="benchmark to run; omit to list them")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if not args.name:
        import importlib.util

        for name, module in BENCHMARKS.items():
            if importlib.util.find_spec(module) is None:
                print(f"{name:<20}(not written yet)")
            else:
                print(f"{name:<20}{load(name).description}")
        return 0
    return run(args.name, args.rows, args.repeat)


if __name__ == "__main__":
    raise SystemExit(main())
