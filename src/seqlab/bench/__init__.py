"""Benchmarks run by ``seqlab bench NAME``: each module has ``main(argv) -> int``."""
