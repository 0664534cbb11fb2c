"""Benchmarks: ours beside the hand-written baseline, in one run, as ratios.

Run ``python -m benchmarks`` to list them and ``python -m benchmarks NAME`` to run one.
"""
