"""GPT training step vs torch's TransformerEncoderLayer.

``python benchmarks/gpt.py --help`` (same as ``seqlab bench gpt``).
"""

import sys

from seqlab.bench.gpt import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
