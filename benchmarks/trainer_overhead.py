"""Trainer time per step vs a bare PyTorch loop; see seqlab/bench/trainer_overhead.py."""

from seqlab.bench.trainer_overhead import main

raise SystemExit(main())
