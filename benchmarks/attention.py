"""Attention vs torch and its scaling with length.

``python benchmarks/attention.py --help`` (same as ``seqlab bench attention``).
"""

import sys

from seqlab.bench.attention import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
