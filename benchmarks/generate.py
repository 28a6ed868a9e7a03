"""Decoding: cache vs none, batched beam search vs one at a time, cache memory: ``python benchmarks/generate.py --help``
(same as ``seqlab bench generate``)."""

import sys

from seqlab.bench.generate import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
