"""Recurrent layers vs torch.nn: ``python benchmarks/recurrent.py --help`` (same as ``seqlab bench recurrent``)."""

import sys

from seqlab.bench.recurrent import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
