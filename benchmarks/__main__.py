"""``python -m benchmarks`` from a checkout: the same as ``chroma bench`` (see chroma.bench)."""

import sys

from chroma import bench

sys.exit(bench.main(prog="python -m benchmarks"))
