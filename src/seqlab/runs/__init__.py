"""Run directories: create and load them (``store``), train a run, evaluate it, tabulate runs, generate from one.

Between the training engine (``seqlab.train``, which knows nothing of run directories beyond the one
it writes to) and the experiments built of several runs (``seqlab.experiments``).
"""

from .checks import FROM_DATA, check_shapes, fill_from_data
from .evaluate import evaluate_run, split_metrics
from .generate import GenerationRun, generate_texts, load_generation_run
from .store import build_run_data, config_diff, data_file_changes, load_run, new_run_dir, read_run_checkpoint
from .table import runs_table
from .train import train_experiment

__all__ = [
    "FROM_DATA",
    "GenerationRun",
    "build_run_data",
    "check_shapes",
    "config_diff",
    "data_file_changes",
    "evaluate_run",
    "fill_from_data",
    "generate_texts",
    "load_generation_run",
    "load_run",
    "new_run_dir",
    "read_run_checkpoint",
    "runs_table",
    "split_metrics",
    "train_experiment",
]
