"""Benchmark entry point: `python benchmarks/bench.py [--max-b N] [--out DIR]` (builds nothing)."""

import sys

from jax_mla_meta.bench import main

if __name__ == "__main__":
    sys.exit(main())
