"""Regenerate docs/results.md: the lecture's claims, each measured by a seqlab command (`make results`).

Every part runs ordinary ``seqlab`` commands into ``runs/results/<part>/`` and records them in
``runs/results/<part>/done.json``; the page quotes exactly those commands and reads its numbers
from what they wrote (summary.json, compare.json, forecast.json, gradflow.json, metrics.jsonl,
predictions.tsv, a benchmark's printed table). A part whose ``done.json`` is newer than its inputs
(the configs and data files it reads; a file newer but with the same content, or a config whose
values are the same, counts as unchanged) and whose commands have not changed is skipped; the page is
rewritten every time, from whatever parts have finished.

    python docs/make_results.py                 # every stale part, two at a time, then the page
    python docs/make_results.py --list          # the parts, their inputs, and whether they are stale
    python docs/make_results.py --only adding,positions --force
    python docs/make_results.py --render        # rewrite the page only
    python docs/make_results.py --long          # the long parts instead (`make results-long`: hours, for a GPU)

Each command runs with OMP_NUM_THREADS=1, two parts at once on the 2-core build machine (a part
with ``threads=2`` is long: `make results-long` runs its parts one at a time).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "runs" / "results"
FIGURES = ROOT / "docs" / "results"
PAGE = ROOT / "docs" / "results.md"
PRESETS = FIGURES / "presets.md"  # the table of the presets' own runs, kept by hand
SHARED = "../shared/data"


@dataclass
class Part:
    """One section of the page: the commands that measure it, what they read, and how to show it."""

    name: str
    title: str
    claim: str
    commands: list[str]  # as quoted on the page; run as ``python -m seqlab ...`` from the repository root
    inputs: list[str]  # files whose change makes the part stale (configs, data)
    render: Callable[[Path], str]  # the part's folder -> the section's body (tables, figures, one sentence)
    minutes: float  # the expected cost on one thread, to schedule the long parts first
    section: str = ""  # parts sharing a section number are shown under one heading
    notes: list[str] = field(default_factory=list)
    long: bool = False  # run by `make results-long` (--long) only, not by `make results`
    threads: int = 1  # OMP_NUM_THREADS of its commands (2: a part measured on the whole 2-core machine, long=True)

    @property
    def dir(self) -> Path:
        return OUT / self.name

    def stale(self) -> str | None:
        """Why the part must run, or None when its results are newer than its inputs."""
        done = self.dir / "done.json"
        if not done.is_file():
            return "not run yet"
        record = json.loads(done.read_text())
        if record.get("commands") != self.commands:
            return "its commands changed"
        seen = record.get("inputs", {})
        for name in self.inputs:
            path = ROOT / name
            newer = path.exists() and path.stat().st_mtime > done.stat().st_mtime
            if newer and fingerprint(path) != seen.get(name):  # a touched file, or a comment, changes nothing
                return f"{name} changed"
        return None

    def fingerprints(self) -> dict[str, str]:
        return {name: fingerprint(ROOT / name) for name in self.inputs if (ROOT / name).exists()}


def fingerprint(path: Path) -> str:
    """sha256 of a file; of a TOML file, of its parsed values (so editing a preset's comment is no change)."""
    if path.suffix == ".toml":
        data = json.dumps(tomllib.loads(path.read_text()), sort_keys=True).encode()
    else:
        data = path.read_bytes()
    return hashlib.sha256(data).hexdigest()


def cpu() -> str:
    """The CPU the commands run on, as torch sees it: its model name and vector capability (AVX2, AVX512)."""
    import torch

    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.is_file() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    name = names[0] if names else "CPU"
    return f"{name} ({torch.backends.cpu.get_cpu_capability()})"


def run_part(part: Part) -> tuple[str, float, str | None]:
    """Run the part's commands one after the other, in a fresh folder (the commands name their runs by glob:
    ``runs/results/gradflow/adding100-*`` is the one run there); done.json only when every one succeeded."""
    if part.dir.exists():
        shutil.rmtree(part.dir)  # an earlier measurement of this part, stale or unfinished: measured again
    part.dir.mkdir(parents=True)
    logs = part.dir / "logs"
    logs.mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(part.threads), "PYTHONUNBUFFERED": "1"}
    inputs = part.fingerprints()  # as the commands read them
    start = time.perf_counter()
    for i, command in enumerate(part.commands):
        shell = f'"{sys.executable}" -m seqlab {command.split(" ", 1)[1]}'  # the shell expands run-*
        with open(logs / f"{i}.out", "w") as out, open(logs / f"{i}.err", "w") as err:
            rc = subprocess.call(shell, shell=True, cwd=ROOT, env=env, stdout=out, stderr=err)
        if rc != 0:
            tail = (logs / f"{i}.err").read_text().strip().splitlines()[-1:] or ["(no message)"]
            return part.name, time.perf_counter() - start, f"`{command}` exited {rc}: {tail[0]}"
    seconds = time.perf_counter() - start
    record = {
        "cpu": cpu(),
        "commands": part.commands,
        "inputs": inputs,
        "seconds": round(seconds, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M"),
    }
    tmp = part.dir / "done.json.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(part.dir / "done.json")
    return part.name, seconds, None


# -- reading what the commands wrote ---------------------------------------------------------------


def newest_run(folder: Path, name: str) -> Path:
    """The newest finished run directory ``folder/name-<time>/`` (it has summary.json)."""
    runs = sorted(p for p in folder.glob(f"{name}-*") if (p / "summary.json").is_file())
    if not runs:
        raise FileNotFoundError(f"no finished run {name}-* in {folder}")
    return runs[-1]


def summary(folder: Path, name: str) -> dict:
    return json.loads((newest_run(folder, name) / "summary.json").read_text())


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def stdout(part_dir: Path, i: int) -> str:
    return (part_dir / "logs" / f"{i}.out").read_text()


def eval_json(part_dir: Path, i: int) -> dict:
    """The metrics ``seqlab eval`` printed (its last JSON object)."""
    text = stdout(part_dir, i)
    return json.loads(text[text.index("{") : text.rindex("}") + 1])


def table(header: list[str], rows: list[list[str]], align: str = "") -> str:
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def figure(src: Path, name: str, alt: str) -> str:
    """Copy a PNG next to the page and return its markdown."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, FIGURES / name)
    return f"![{alt}](results/{name})"


def fmt(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


# -- 1. adding problem -----------------------------------------------------------------------------

ADDING_T = (50, 100, 200, 400)
ADDING_STEPS = 2000
FAMILIES = ("rnn", "lstm", "gru", "transformer")


def render_adding(d: Path) -> str:
    rows, params = [], {}
    solved = {f: [] for f in FAMILIES}
    for T in ADDING_T:
        data = json.loads((d / f"T{T}" / "compare.json").read_text())
        by = {f["family"]: f for f in data["families"]}
        for f in FAMILIES:
            params.setdefault(f, by[f]["params"])
            if by[f]["mean"] < 0.1667 / 10:
                solved[f].append(T)
        rows.append([str(T)] + [fmt(by[f]["mean"]) for f in FAMILIES] + ["0.1667"])
    header = ["T"] + [f"{f} ({params[f]:,} params)" for f in FAMILIES] + ["baseline (predict 1)"]
    said = "; ".join(f"{f} at T = {', '.join(map(str, solved[f]))}" if solved[f] else f"{f} at none" for f in FAMILIES)
    unsolved = [T for T in ADDING_T if T not in solved["lstm"]]
    lstm = (
        f" Within {ADDING_STEPS:,} steps the LSTM with torch's default initialisation has not left the baseline at "
        f"T = {', '.join(map(str, unsolved))}: its forget gate starts at sigmoid(0) = 0.5, so the cell halves at "
        "every step (section 2). That is the initialisation, not the LSTM: the same LSTM initialised to remember "
        "solves every length (next table). The GRU, whose update gate can copy its state unchanged, gets there "
        "from torch's default."
        if unsolved
        else ""
    )
    return (
        f"Test MSE after {ADDING_STEPS:,} steps of 64 sequences (1 seed; widths matched to the LSTM's parameter "
        "count by `--match params`):\n\n"
        + table(header, rows)
        + f"\n\nBelow a tenth of the baseline (MSE < 0.0167): {said}.{lstm} The baseline always answers 1, the "
        "mean of the sum of two uniform numbers (MSE 1/6 = 0.1667)."
    )


# The same LSTM, initialised to remember: forget-gate bias 1 (Gers et al. 2000) and chrono (Tallec & Ollivier 2018).
ADDING_INITS = (("forget1", "--model.forget_bias=1", "forget bias 1"), ("chrono", "--model.init=chrono", "chrono"))
SOLVED = 0.1667 / 10


def first_below(run: Path, threshold: float) -> int | None:
    """The first evaluated step whose validation loss is below ``threshold`` (None: never)."""
    return next((r["step"] for r in records(run) if r.get("val/loss", math.inf) < threshold), None)


def render_adding_init(d: Path) -> str:
    rows, solved = [], {name: [] for name, _, _ in ADDING_INITS}
    for T in ADDING_T:
        row = [str(T)]
        for name, _, _ in ADDING_INITS:
            run = newest_run(d, f"{name}-T{T}")
            s = json.loads((run / "summary.json").read_text())
            if s["test/loss"] < SOLVED:
                solved[name].append(T)
            step = first_below(run, SOLVED)
            row += [fmt(s["test/loss"]), f"{step:,}" if step else "never", fmt(s["seconds"], 0)]
        rows.append(row + ["0.1667"])
    header = ["T"]
    for _, _, label in ADDING_INITS:
        header += [f"lstm, {label}", "val < 0.0167 at step", "seconds"]
    header += ["baseline (predict 1)"]
    said = "; ".join(
        f"{label} at T = {', '.join(map(str, solved[n]))}" if solved[n] else f"{label} at none"
        for n, _, label in ADDING_INITS
    )
    return (
        f"The LSTM above (`configs/adding_lstm.toml`, hidden 64, 17,473 params, {ADDING_STEPS:,} steps, seed 0), with "
        "only its initial biases changed (`seqlab.nn.init_recurrent_`, docs/initialisation.md): the forget gate's bias "
        "raised by 1 (Gers et al. 2000), or chrono (Tallec & Ollivier 2018: b_f = log(u), b_i = -b_f, "
        "u ~ U(1, T - 1), so each cell's memory time 1 + u spreads over 2 .. T steps). Test MSE, the first "
        "evaluation (every 250 steps) below a tenth of the baseline, and training seconds:\n\n"
        + table(header, rows)
        + f"\n\nBelow a tenth of the baseline (MSE < 0.0167): {said}. {init_lesson(solved)}"
    )


def init_lesson(solved: dict[str, list[int]]) -> str:
    """The section's lesson, from which lengths each initialisation solved."""
    forget = solved["forget1"]
    beyond = [T for T in ADDING_T if T not in forget]
    every = len(solved["chrono"]) == len(ADDING_T)
    return (
        "The LSTM's failure in the first table is its initialisation: with torch's default the forget gate starts "
        "at sigmoid(0) = 0.5, and the gradient from the sum vanishes before it reaches the markers (section 2). "
        "A forget bias of 1 starts it at 0.73, a memory of about 4 steps"
        + (f", which is not enough at T = {', '.join(map(str, beyond))} within this budget" if beyond else "")
        + ". Chrono gives each cell a memory time between 2 and T steps from the start"
        + (", and the same LSTM solves every length within the same 2,000 steps." if every else ".")
    )


# The copy-memory preset (T = 20 blanks, 3,000 steps) with each initialisation.
COPY_INITS = (
    ("default", "", "torch's default"),
    ("forget1", " --model.forget_bias=1", "forget bias 1"),
    ("chrono", " --model.init=chrono", "chrono"),
)


def recalled_accuracy(run: Path) -> float:
    """Step accuracy on the recalled symbols only: the last 10 steps of every test sequence (the other steps
    are blanks, which a memoryless model gets right), from the run's final weights."""
    import torch

    from seqlab.data import build_splits
    from seqlab.data.synthetic import NUM_COPY
    from seqlab.runs import load_run

    exp, model, _ = load_run(run)
    test = build_splits(exp.data).test
    x, y = (torch.stack(t) for t in zip(*(test[i] for i in range(len(test)))))  # (N, T + 20, 10), (N, T + 20)
    with torch.no_grad():
        logits, _ = model.eval()(x)  # (N, T + 20, 10)
    return (logits[:, -NUM_COPY:].argmax(-1) == y[:, -NUM_COPY:]).float().mean().item()


def render_copy(d: Path) -> str:
    rows, recalled = [], {}
    for name, _, label in COPY_INITS:
        run = newest_run(d, name)
        s = json.loads((run / "summary.json").read_text())
        recalled[name] = recalled_accuracy(run)
        rows.append(
            [label, fmt(s["test/loss"], 3), fmt(s["test/accuracy"], 3), fmt(recalled[name], 3), fmt(s["seconds"], 0)]
        )
    verdict = "reaches" if recalled["chrono"] >= 0.99 else "does not reach"
    return (
        "`configs/copy_lstm.toml` (10 symbols, T = 20 blanks, a delimiter, then recall the 10 symbols; LSTM 128, "
        "3,000 steps, seed 0); a memoryless model scores cross-entropy 0.520 and 1/8 of the recalled symbols:\n\n"
        + table(
            ["initialisation", "test cross-entropy", "step accuracy (all steps)", "recalled symbols", "seconds"], rows
        )
        + f"\n\nWith chrono (T_max = 40, the sequence length) the LSTM {verdict} 0.99 on the recalled symbols "
        f"within 3,000 steps ({recalled['chrono']:.3f}, against {recalled['default']:.3f} with torch's default and "
        f"{recalled['forget1']:.3f} with a forget bias of 1); it is the only one well on its way (its validation loss "
        "was still falling fast at the end), and the next run gives it the budget it needs. The all-step accuracy "
        "flatters every model: 30 of the 40 steps are blanks."
    )


COPY_BUDGET = 10000
SURE_RECALL = (30 + 9.9) / 40  # all-step accuracy at T = 20 that leaves at most 1% errors for the 10 recalled steps


def render_copy_budget(d: Path, steps: int = COPY_BUDGET) -> str:
    run = newest_run(d, "chrono")
    s = json.loads((run / "summary.json").read_text())
    recalled = recalled_accuracy(run)
    curve = [(r["step"], r["val/accuracy"]) for r in records(run) if "val/accuracy" in r]
    marks = [c for c in curve if c[0] % (steps // 5) == 0]
    sure = next((step for step, acc in curve if acc >= SURE_RECALL), None)
    return (
        f"The chrono LSTM of the table above, trained for {steps:,} steps instead of 3,000: test recalled-symbol "
        f"accuracy {recalled:.3f} (all steps {s['test/accuracy']:.3f}, cross-entropy {s['test/loss']:.3f}), "
        f"{s['seconds'] / 60:.1f} min. Validation accuracy over all steps by step: "
        + ", ".join(f"{step:,}: {acc:.3f}" for step, acc in marks)
        + (
            f". It first reached {SURE_RECALL:.4f} (which leaves at most 1% errors on the recalled symbols) at step "
            f"{sure:,}."
            if sure
            else f"; it never reached {SURE_RECALL:.4f}, which would guarantee 0.99 on the recalled symbols: at the "
            f"preset's constant learning rate, recall at 0.99 needs more than {steps:,} steps, and the curve is still "
            "rising."
        )
        + " Recalling a symbol needs the gradient to cross the 30 steps between the symbol and its recall, a path "
        "chrono opens at the start (section 2) but which the optimiser still has to learn to use for all 10 symbols."
    )


# -- 2. gradient norm through time -----------------------------------------------------------------


GRADFLOW_STEPS = 2000


def render_gradflow(d: Path) -> str:
    run = newest_run(d, "adding100")
    flow = json.loads((run / "plots" / "gradflow.json").read_text())
    rows, decay = [], {}
    for name, m in flow["models"].items():
        norms = m["norms"]
        ratio = f"{norms[0] / norms[-1]:.3g}" if norms[-1] > 0 else "-"
        decay[name] = m["decay_per_step"]
        rows.append([name, fmt(m["decay_per_step"]), ratio])
    fig = figure(run / "plots" / "gradflow.png", "gradflow.png", "gradient norm through time")
    trained = next(n for n in decay if n.endswith("(trained)"))
    test_mse = json.loads((run / "summary.json").read_text())["test/loss"]
    return (
        f"The norm of dL/dH_t at every step t of one batch of the adding problem at T = 100 (the loss is read at "
        f"the last step): an LSTM trained for {GRADFLOW_STEPS:,} steps (test MSE {test_mse:.4f}), and freshly "
        "initialised models of every cell on the same batch (same seed):\n\n"
        + table(["model", "fitted decay per step r (norm ~ r^(T-t))", "norm at t = 1 / norm at t = T"], rows, "lrr")
        + "\n\n"
        + fig
        + f"\n\nA factor r < 1 per step back is a vanishing gradient: the first step's share is about r^99. "
        f"With torch's initialisation every cell vanishes (the tanh RNN at r = {fmt(decay.get('rnn_tanh (init)'), 3)}, "
        f"an LSTM whose forget gate starts near 0.5 at r = {fmt(decay.get('lstm (init)'), 3)}); the trained LSTM "
        f"has learned to keep its cell, r = {fmt(decay[trained], 3)}. The initialisation decides where the LSTM "
        f"starts: a forget-gate bias of 1 gives r = {fmt(decay.get('lstm, forget bias 1 (init)'), 3)}, chrono "
        f"(T_max = 100) r = {fmt(decay.get('lstm, chrono (init)'), 3)}, close to the trained model's before any "
        "training (docs/initialisation.md)."
    )


# -- 3. truncated vs full BPTT --------------------------------------------------------------------

TBPTT = (8, 32, 128, 100000)


def render_tbptt(d: Path) -> str:
    rows, loss = [], {}
    for k in TBPTT:
        s = summary(d, f"k{k}")
        loss[k] = s["test/loss"]
        label = "full (the whole stream)" if k == 100000 else str(k)
        bits = s["test/loss"] / math.log(2)
        rows.append([label, f"{s['steps']:,}", fmt(s["test/loss"], 3), fmt(bits, 3), fmt(s["seconds"], 1)])
    return (
        "The character LSTM of `configs/charlm_lstm.toml` (32 parallel streams of the embedded Shakespeare sample, "
        "15 epochs), with the hidden state carried between chunks of k characters and the gradient cut at each "
        "chunk's start:\n\n"
        + table(["k (train.tbptt_steps)", "updates", "test loss (nats/char)", "bits/char", "seconds"], rows)
        + f"\n\nAt equal data (15 epochs), k = {min(loss, key=loss.get)} is best here: a shorter truncation makes "
        "more, cheaper updates but cuts every dependency longer than k out of the gradient; full BPTT makes one "
        "update per epoch, 15 in all. What the cut removes from the gradient is in section 2's run, "
        "`plots/gradflow.json` (`truncated_bptt`)."
    )


# -- 4. MNIST ------------------------------------------------------------------------------------

PIXEL_STEPS = 200


def render_mnist(d: Path) -> str:
    rows = []
    for name, what in (
        ("lab", "rows (28 x 28): the lab preset, LSTM 2 x 256"),
        ("pixels", f"pixels (784 x 1): GRU 128, {PIXEL_STEPS} steps"),
        ("permuted", f"permuted pixels (784 x 1): GRU 128, {PIXEL_STEPS} steps"),
    ):
        s = summary(d, name)
        rows.append([what, f"{s['params']:,}", f"{s['test/accuracy']:.2%}", f"{s['epochs']:.2f}", fmt(s["seconds"], 0)])
    lab = summary(d, "lab")["test/accuracy"]
    verdict = "meets" if lab >= 0.99 else "misses"
    return (
        table(["view and model", "params", "test accuracy", "epochs", "seconds"], rows)
        + f"\n\nThe lab preset {verdict} the target of 99.0% in at most 3 epochs ({lab:.2%}). Pixel by pixel the "
        "same digits are 784-step sequences: within this budget a recurrent model learns much less, and the "
        "permuted order, which scatters neighbouring pixels hundreds of steps apart, is harder still."
    )


# The long part (`make results-long`): 784-step pixel sequences trained long enough to show the published ordering.
PIXEL_LONG_EPOCHS = 20
PIXEL_LONG = [(view, cell) for view in ("pixels", "permuted") for cell in ("gru", "lstm")]


def render_mnist_long(d: Path) -> str:
    rows, acc = [], {}
    for view, cell in PIXEL_LONG:
        s = summary(d, f"{view}-{cell}")
        acc[view, cell] = s["test/accuracy"]
        rows.append(
            [view, cell, f"{s['params']:,}", f"{s['test/accuracy']:.2%}", f"{s['epochs']:.1f}"]
            + [fmt(s["seconds"] / 60, 1)]
        )
    ordered = [c for c in ("gru", "lstm") if acc["pixels", c] > acc["permuted", c]]
    return (
        f"`configs/mnist_lstm.toml` read one pixel per step (784 steps), hidden 128, chrono initialisation "
        f"(T_max = 784), {PIXEL_LONG_EPOCHS} epochs with the preset's cosine schedule:\n\n"
        + table(["view", "cell", "params", "test accuracy", "epochs", "minutes"], rows, "llrrrr")
        + f"\n\nPixel order above permuted order for: {', '.join(ordered) or 'neither cell'} (published LSTM "
        "figures: about 98% and 90%, e.g. Cooijmans et al. 2017). In pixel order the strokes are local in time; "
        "the permutation scatters neighbouring pixels hundreds of steps apart."
    )


# -- 5. LSTM vs GRU ---------------------------------------------------------------------------------


def render_lstm_gru(d: Path) -> str:
    rows = []
    for match in ("hidden", "params"):
        data = json.loads((d / match / "compare.json").read_text())
        for f in data["families"]:
            rows.append(
                [f"equal {match}", f["family"], f"{f['width_key']} {f['width']}", f"{f['params']:,}"]
                + [f"{f['mean']:.2%}", fmt(f["seconds_mean"], 0)]
            )
    return (
        "Row-wise MNIST with `configs/mnist_lstm.toml` (5 epochs, 1 seed):\n\n"
        + table(["comparison", "cell", "width", "params", "test accuracy", "seconds"], rows, "lllrrr")
        + "\n\nThe GRU has three weight blocks where the LSTM has four: at equal hidden size it has 3/4 of the "
        "parameters; at equal parameter count it gets a wider state."
    )


# -- 6. and 7. Transformer ablations --------------------------------------------------------------

POSITIONS = ("none", "sinusoidal", "learned", "rotary")
ABLATION_STEPS = 600


def render_positions(d: Path) -> str:
    rows = []
    for p in POSITIONS:
        s = summary(d, f"pos-{p}")
        rows.append([p, f"{s['test/exact_match']:.1%}", f"{s['test/token_accuracy']:.1%}", fmt(s["seconds"], 0)])
    return (
        f"`configs/reverse_transformer.toml` (strings of 1-20 symbols reversed), {ABLATION_STEPS} steps:\n\n"
        + table(["positions", "test exact match", "test token accuracy", "seconds"], rows)
        + "\n\nWithout positions the encoder is permutation-equivariant (`tests/test_positions_ablation.py`): "
        "it sees a bag of symbols, and reversing is guesswork."
    )


def render_heads(d: Path) -> str:
    rows = []
    for h in (1, 4):
        s = summary(d, f"heads{h}")
        rows.append([str(h), str(64 // h), f"{s['test/exact_match']:.1%}", f"{s['test/token_accuracy']:.1%}"])
    return (
        f"`configs/sort_transformer.toml` (sort 1-20 symbols), width 64, {ABLATION_STEPS} steps:\n\n"
        + table(["heads", "head width", "test exact match", "test token accuracy"], rows)
        + "\n\nSame parameters either way; several heads can attend to several places at once."
    )


# -- 8. sunspots ----------------------------------------------------------------------------------


def render_sunspots(d: Path) -> str:
    first = json.loads((d / "order1" / "forecast.json").read_text())
    ninth = json.loads((d / "order9" / "forecast.json").read_text())
    names = {
        "naive": "naive (last value): the floor",
        "ar": "AR(tau), least squares",
        "mlp_ar": "MLP on the tau-window (d2l's Markov model)",
        "rnn": "latent AR: RNN",
        "lstm": "latent AR: LSTM",
        "gru": "latent AR: GRU",
    }
    horizons = sorted(next(iter(ninth.values())), key=int)
    rows = [["AR(1): first-order Markov"] + [fmt(first["ar"][h]["rmse"], 1) for h in horizons]]
    rows += [[names.get(m, m)] + [fmt(per[h]["rmse"], 1) for h in horizons] for m, per in ninth.items()]
    return (
        "Yearly sunspot numbers, chronological split, iterated forecasts from every origin of the test part, "
        "RMSE in sunspot numbers (tau = 9 unless named):\n\n"
        + table(["model"] + [f"RMSE h = {h}" for h in horizons], rows)
        + "\n\nThe naive forecast is the floor to beat; a first-order chain sees too little of the 11-year cycle."
    )


# -- 9. cost vs length ----------------------------------------------------------------------------


def render_cost(d: Path) -> str:
    text = stdout(d, 0)
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return (
        "Forward + backward time per batch as the sequence grows (`seqlab bench attention`'s scaling table, "
        "one thread):\n\n"
        + "\n".join(lines)
        + "\n\nThe LSTM's time grows linearly with T (T dependent steps); self-attention's with T^2 "
        "(a T x T score matrix per head), with more work done in parallel at short lengths."
    )


# -- 10. generation: greedy vs beam, GPT vs LSTM ------------------------------------------------


def render_fra_eng(d: Path, model: str) -> str:
    greedy, beam = eval_json(d, 1), eval_json(d, 2)
    run = newest_run(d, model)
    rows = [
        [how, fmt(m["test/bleu"], 1), fmt(m["test/chrf"], 1), f"{m['test/exact_match']:.1%}"]
        for how, m in (("greedy", greedy), ("beam 5", beam))
    ]
    from seqlab.train.seq2seq_metrics import read_predictions

    examples = read_predictions(run / "predictions.tsv")[:5]
    shown = table(
        ["French", "reference", "greedy output"],
        [[s.replace("|", "\\|"), r.replace("|", "\\|"), h.replace("|", "\\|")] for s, r, h in examples],
        "lll",
    )
    s = json.loads((run / "summary.json").read_text())
    return (
        f"`configs/fra_eng_{model}.toml`, {s['params']:,} parameters, {s['seconds'] / 60:.1f} min of training, "
        "sacreBLEU on the 10% held out:\n\n"
        + table(["decoding", "BLEU", "chrF", "exact match"], rows)
        + "\n\nThe first five test sentences:\n\n"
        + shown
    )


def render_fra_eng_gru(d: Path) -> str:
    return render_fra_eng(d, "gru_attention")


def render_fra_eng_transformer(d: Path) -> str:
    return render_fra_eng(d, "transformer")


LSTM_STEPS = 1000  # about as long as the GPT's 2,000 steps here
# The GPT of the equal-time comparison: the preset's first recipe (2,000 steps of 16 windows of 128
# characters, AdamW's defaults otherwise), pinned so that the comparison stays put as the preset changes.
GPT_FIRST_RECIPE = (
    "--model.block_size=128 --data.seq_len=128 --train.batch_size=16 --train.max_steps=2000 "
    "--data.num_windows=32000 --train.decay=all --train.beta2=0.999 --train.min_lr=0 --train.weight_decay=0.1"
)


def val_by_seconds(run: Path) -> list[tuple[float, float]]:
    """(training seconds, val loss) at every evaluation, the seconds from the training record of that step."""
    recs = records(run)
    seconds = {r["step"]: r["train/seconds"] for r in recs if "train/seconds" in r}
    return [(seconds[r["step"]], r["val/loss"]) for r in recs if "val/loss" in r and r["step"] in seconds]


def plot_val_curves(file: str, curves: dict[str, list[tuple[float, float]]], xlabel: str, line: float | None = None):
    """docs/results/FILE: each labelled (training seconds, val loss) curve against minutes, and a level line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, curve in curves.items():
        ax.plot([t / 60 for t, _ in curve], [v for _, v in curve], marker="o", label=label)
    if line is not None:
        ax.axhline(line, color="grey", linestyle="--", linewidth=1, label=f"{line:.2f} nats/char")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("val loss (nats/char)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURES / file, dpi=110)
    plt.close(fig)


def render_gpt_lstm(d: Path) -> str:
    rows, best_by, curves = [], {}, {}
    for name, label in (("gpt", "GPT (2,000 steps)"), ("lstm", "LSTM (shakespeare_char_lstm)")):
        run = newest_run(d, name)
        curve = curves[label] = val_by_seconds(run)
        s = json.loads((run / "summary.json").read_text())
        at = {m: min((v for t, v in curve if t <= m * 60), default=None) for m in (5, 10, 15)}
        best_by[name.upper()] = (at, s["seconds"] / 60)
        rows.append(
            [label, f"{s['params']:,}", f"{s['steps']:,}", fmt(s["seconds"] / 60, 1)]
            + [fmt(at[m], 3) for m in at]
            + [fmt(s["best_val/loss"], 3)]
        )
    plot_val_curves("gpt_vs_lstm.png", curves, "training minutes (one thread)")
    return (
        "Tiny Shakespeare (90/10 split), validation loss in nats per character against training time: the GPT "
        "preset's first recipe (2,000 steps of 16 windows of 128 characters; evaluated every 250 steps), the LSTM "
        f"preset's {LSTM_STEPS:,} steps (evaluated every 100); the commands state the recipes so that the page's "
        "comparison stays put as the presets change (section 10's last part: the GPT preset as it is now):\n\n"
        + table(
            ["model", "params", "steps", "minutes", "best val by 5 min", "by 10 min", "by 15 min", "final best"],
            rows,
        )
        + f"\n\n{who_leads(best_by)}\n\n![GPT vs LSTM at equal time](results/gpt_vs_lstm.png)"
    )


def render_gpt_budget(d: Path) -> str:
    run = newest_run(d, "gpt")
    curve = val_by_seconds(run)
    s = json.loads((run / "summary.json").read_text())
    steps = [r["step"] for r in records(run) if "val/loss" in r]
    wall = json.loads((d / "done.json").read_text())["seconds"] if (d / "done.json").is_file() else None
    plot_val_curves("gpt_budget.png", {"val (GPT preset)": curve}, "training minutes (two threads)", line=1.50)
    rows = [[f"{step:,}", fmt(t / 60, 1), fmt(v, 3)] for step, (t, v) in zip(steps, curve)]
    final = curve[-1][1]
    best = min(range(len(curve)), key=lambda i: curve[i][1])

    def against(v: float) -> str:
        return "at or under 1.50" if v <= 1.50 else "above 1.50"

    return (
        f"{s['params']:,} parameters, {s['steps']:,} steps in {s['precision']}; validation loss (nats/char, the "
        "val text's consecutive windows) against training minutes:\n\n"
        + table(["step", "training minutes", "val loss"], rows)
        + f"\n\nBest val loss {curve[best][1]:.4f} at step {steps[best]:,} ({curve[best][0] / 60:.1f} min; the run's "
        f"checkpoints/best.pt), {against(curve[best][1])}; final {final:.4f} after {s['seconds'] / 60:.1f} min of "
        f"training{f', {wall / 60:.1f} min of wall time with start-up and evaluations' if wall else ''}, "
        f"{against(final)}." + "\n\n![GPT preset's validation loss against time](results/gpt_budget.png)"
    )


def who_leads(best_by: dict[str, tuple[dict[int, float | None], float]]) -> str:
    """One sentence from the table: which model has the lower validation loss by each time mark.

    ``best_by``: model -> ({minutes: best val loss by then, or None}, minutes the run took)."""
    (a, (at_a, end_a)), (b, (at_b, end_b)) = best_by.items()
    said = []
    for m in at_a:
        if at_a[m] is None or at_b[m] is None:
            continue
        lead, x, y = (a, at_a[m], at_b[m]) if at_a[m] <= at_b[m] else (b, at_b[m], at_a[m])
        done = [f"the {k} had finished at {end:.1f} min" for k, end in ((a, end_a), (b, end_b)) if end < m]
        said.append(f"by {m} min, the {lead} ({x:.3f} vs {y:.3f}{'; ' + done[0] if done else ''})")
    return "Lower validation loss " + "; ".join(said) + "." if said else ""


# -- the parts -----------------------------------------------------------------------------------

TINY = f"{SHARED}/tinyshakespeare/input.txt"
EF = f"{SHARED}/eng-fra/eng-fra.txt"
MNIST = f"{SHARED}/mnist"
R = "runs/results"

PARTS = [
    Part(
        "adding",
        "The adding problem: four models, torch's default initialisation",
        "Published: an LSTM beats the 0.167 baseline up to T = 400, a tanh RNN does not (Le et al. 2015).",
        [
            f"seqlab compare configs/adding_lstm.toml --models lstm,gru,rnn,transformer --seeds 1 "
            f"--budget-steps {ADDING_STEPS} --data.seq_len={T} --out {R}/adding/T{T} --quiet"
            for T in ADDING_T
        ],
        ["configs/adding_lstm.toml"],
        render_adding,
        30,
        "1",
    ),
    Part(
        "adding_init",
        "The same LSTM with an initialisation that lets it remember",
        "Initialised to remember (forget gate open), the LSTM solves the adding problem up to T = 400 within the "
        "same budget (Tallec & Ollivier 2018).",
        [
            f"seqlab train configs/adding_lstm.toml --data.seq_len={T} {flag} --train.max_steps={ADDING_STEPS} "
            f"--out {R}/adding_init --name {name}-T{T} --quiet"
            for name, flag, _ in reversed(ADDING_INITS)
            for T in ADDING_T
        ],
        ["configs/adding_lstm.toml"],
        render_adding_init,
        20,
        "1",
    ),
    Part(
        "copy",
        "Copy memory: recalling 10 symbols after 20 blanks",
        "An LSTM whose cells start able to hold a symbol for the whole sequence learns to recall it.",
        [
            f"seqlab train configs/copy_lstm.toml{flag} --out {R}/copy --name {name} --quiet"
            for name, flag, _ in COPY_INITS
        ],
        ["configs/copy_lstm.toml"],
        render_copy,
        2,
        "1",
    ),
    Part(
        "copy_budget",
        "Copy memory: the budget chrono needs",
        "Given more steps, the chrono LSTM's recall keeps rising.",
        [
            f"seqlab train configs/copy_lstm.toml --model.init=chrono --train.max_steps={COPY_BUDGET} "
            f"--train.eval_every=500 --out {R}/copy_budget --name chrono --quiet"
        ],
        ["configs/copy_lstm.toml"],
        render_copy_budget,
        8,
        "1",
    ),
    Part(
        "gradflow",
        "Gradient norm through time: vanishing in the tanh RNN, kept by the gates",
        "The gradient reaching step t shrinks geometrically with the distance T - t in a vanilla RNN.",
        [
            f"seqlab train configs/adding_lstm.toml --data.seq_len=100 --train.max_steps={GRADFLOW_STEPS} "
            f"--out {R}/gradflow --name adding100 --quiet",
            f"seqlab plot {R}/gradflow/adding100-* --what gradflow",
        ],
        ["configs/adding_lstm.toml"],
        render_gradflow,
        1,
        "2",
    ),
    Part(
        "tbptt",
        "Truncated vs full backpropagation through time",
        "Truncated BPTT trades the long gradient for many cheap updates.",
        [
            f"seqlab train configs/charlm_lstm.toml --train.tbptt_steps={k} --out {R}/tbptt --name k{k} --quiet"
            for k in TBPTT
        ],
        ["configs/charlm_lstm.toml"],
        render_tbptt,
        3,
        "3",
    ),
    Part(
        "mnist",
        "MNIST row by row (the lecture's lab), pixel by pixel, and permuted",
        "An LSTM reading 28 rows classifies MNIST at about 99%; 784 single pixels are a long-range task.",
        [
            f"seqlab train configs/mnist_lab.toml --out {R}/mnist --name lab --quiet",
            f"seqlab train configs/mnist_lstm.toml --data.view=pixels --model.input_size=1 --model.cell=gru "
            f"--train.max_steps={PIXEL_STEPS} --train.eval_every=100 --out {R}/mnist --name pixels --quiet",
            f"seqlab train configs/mnist_lstm.toml --data.view=permuted --model.input_size=1 --model.cell=gru "
            f"--train.max_steps={PIXEL_STEPS} --train.eval_every=100 --out {R}/mnist --name permuted --quiet",
        ],
        ["configs/mnist_lab.toml", "configs/mnist_lstm.toml", f"{MNIST}/train-images-idx3-ubyte.gz"],
        render_mnist,
        20,
        "4",
    ),
    Part(
        "mnist_long",
        "Pixel and permuted-pixel MNIST, trained long (`make results-long`)",
        "Recurrent models read pixel-order MNIST better than permuted order (published LSTM: about 98% and 90%).",
        [
            f"seqlab train configs/mnist_lstm.toml --data.view={view} --model.input_size=1 --model.cell={cell} "
            f"--model.init=chrono --train.epochs={PIXEL_LONG_EPOCHS} --train.eval_every=1000 --out {R}/mnist_long "
            f"--name {view}-{cell} --quiet"
            for view, cell in PIXEL_LONG
        ],
        ["configs/mnist_lstm.toml", f"{MNIST}/train-images-idx3-ubyte.gz"],
        render_mnist_long,
        600,
        "4",
        long=True,
    ),
    Part(
        "lstm_gru",
        "LSTM vs GRU at equal hidden size and at equal parameter count",
        "The GRU does about as well as the LSTM with fewer parameters.",
        [
            f"seqlab compare configs/mnist_lstm.toml --models lstm,gru --match {m} --seeds 1 --out {R}/lstm_gru/{m} "
            "--quiet"
            for m in ("hidden", "params")
        ],
        ["configs/mnist_lstm.toml"],
        render_lstm_gru,
        4,
        "5",
    ),
    Part(
        "positions",
        "Attention needs positional encoding",
        "Self-attention is blind to order; positions, added or rotated in, give it back.",
        [
            f"seqlab train configs/reverse_transformer.toml --model.positions={p} --train.max_steps={ABLATION_STEPS} "
            f"--train.warmup_steps=100 --out {R}/positions --name pos-{p} --quiet"
            for p in POSITIONS
        ],
        ["configs/reverse_transformer.toml"],
        render_positions,
        4,
        "6",
    ),
    Part(
        "heads",
        "One head vs several at equal width",
        "Multi-head attention splits the same width into several attention patterns.",
        [
            f"seqlab train configs/sort_transformer.toml --model.num_heads={h} --train.max_steps={ABLATION_STEPS} "
            f"--train.warmup_steps=100 --out {R}/heads --name heads{h} --quiet"
            for h in (1, 4)
        ],
        ["configs/sort_transformer.toml"],
        render_heads,
        2,
        "7",
    ),
    Part(
        "sunspots",
        "AR(tau), Markov and latent autoregressive models on sunspots",
        "A latent state (RNN) summarises the past that a fixed window of tau values cuts off.",
        [
            f"seqlab forecast --data sunspots --order 1 --models ar --interval-model none --out {R}/sunspots/order1 "
            "--quiet",
            f"seqlab forecast --data sunspots --models ar,mlp_ar,rnn,lstm,gru --interval-model none "
            f"--out {R}/sunspots/order9 --quiet",
        ],
        [],
        render_sunspots,
        2,
        "8",
    ),
    Part(
        "cost",
        "Cost against sequence length: recurrence vs attention",
        "A recurrent layer costs O(T) sequential steps, self-attention O(T^2) parallel work.",
        ["seqlab bench attention --skip sdpa,mha --lengths 64,128,256,512,1024 --scaling-repeats 3"],
        [],
        render_cost,
        3,
        "9",
    ),
    Part(
        "fra_eng_gru",
        "Greedy vs beam search on French -> English: GRU with attention",
        "Beam search finds translations of higher probability than greedy decoding.",
        [
            f"seqlab train configs/fra_eng_gru_attention.toml --out {R}/fra_eng_gru --name gru_attention --quiet",
            f"seqlab eval {R}/fra_eng_gru/gru_attention-*",
            f"seqlab eval {R}/fra_eng_gru/gru_attention-* --beam 5",
        ],
        ["configs/fra_eng_gru_attention.toml", EF],
        render_fra_eng_gru,
        16,
        "10",
    ),
    Part(
        "fra_eng_transformer",
        "Greedy vs beam search on French -> English: Transformer",
        "Beam search finds translations of higher probability than greedy decoding.",
        [
            f"seqlab train configs/fra_eng_transformer.toml --out {R}/fra_eng_transformer --name transformer --quiet",
            f"seqlab eval {R}/fra_eng_transformer/transformer-*",
            f"seqlab eval {R}/fra_eng_transformer/transformer-* --beam 5",
        ],
        ["configs/fra_eng_transformer.toml", EF],
        render_fra_eng_transformer,
        20,
        "10",
    ),
    Part(
        "gpt_lstm",
        "GPT vs LSTM on Tiny Shakespeare at equal training time",
        "Attention over a context window learns a character model faster than recurrence, per second.",
        [
            f"seqlab train configs/shakespeare_char_gpt.toml {GPT_FIRST_RECIPE} --train.eval_every=250 "
            f"--out {R}/gpt_lstm --name gpt --quiet",
            f"seqlab train configs/shakespeare_char_lstm.toml --train.max_steps={LSTM_STEPS} --train.eval_every=100 "
            f"--out {R}/gpt_lstm --name lstm --quiet",
        ],
        ["configs/shakespeare_char_gpt.toml", "configs/shakespeare_char_lstm.toml", TINY],
        render_gpt_lstm,
        17,
        "10",
    ),
    Part(
        "gpt_budget",
        "The GPT preset in 20 minutes on two threads",
        "A 1.8M-parameter character GPT reaches 1.50 nats/char on Tiny Shakespeare's validation text within 20 "
        "minutes of wall time on two CPU cores.",
        [f"seqlab train configs/shakespeare_char_gpt.toml --out {R}/gpt_budget --name gpt --quiet"],
        ["configs/shakespeare_char_gpt.toml", TINY],
        render_gpt_budget,
        20,
        "10",
        long=True,
        threads=2,
    ),
]


# -- the page ------------------------------------------------------------------------------------

INTRO = """# Results: the lecture's claims, measured

Each section states a claim, the command that tests it, what the command measured on the 2-core
build machine (CPU, torch 2.13.0+cpu, one thread per command, two commands at a time) and one
sentence on what it shows. `make results` regenerates this page (`docs/make_results.py`): it
reruns the parts whose configs or data changed and rewrites the page from the runs under
`runs/results/`; `make results ONLY=adding,positions` (add `FORCE=1` to rerun them anyway) runs only
those parts (`python docs/make_results.py --list` names them). Training times are one thread's, with
the other core busy. Each section's last line says when it was measured and on which CPU (torch's
vector capability); the sections measured on 2026-12-01 ran on an AVX-512 EPYC, where the GPT
preset trains in bf16 (docs/benchmarks.md, "Two machines"). `make results-long` runs the parts too
long for `make results` (section 4's pixel MNIST trained for 20 epochs: hours per run on one CPU
thread, meant for a GPU machine).
"""


GROUPED = {
    "1": "Long-range memory: the LSTM remembers across hundreds of steps, the tanh RNN does not",
    "10": "Generation: greedy vs beam search BLEU, GPT vs LSTM at equal time, the GPT preset in 20 minutes",
}  # several parts each


def earlier_body(page: str, part: Part) -> str | None:
    """The part's measured body on the page as it stands, if the page quotes the same commands: a checkout
    without ``runs/results`` (a fresh clone, a rerun of one part) keeps the sections it cannot regenerate."""
    block = "```\n" + "\n".join(part.commands) + "\n```\n"
    at = page.find(block)
    if at < 0:
        return None
    rest = page[at + len(block) :]
    ends = [i for i in (rest.find("\n## "), rest.find("\n### ")) if i >= 0]
    body = rest[: min(ends)] if ends else rest
    body = body.strip()
    return None if not body or body.startswith("Not measured yet") else body


def render_page(parts: list[Part], earlier: str = "") -> str:
    out = [INTRO]
    sections: dict[str, list[Part]] = {}
    for p in parts:
        sections.setdefault(p.section, []).append(p)
    for number, group in sections.items():
        title = GROUPED.get(number, group[0].title) if len(group) > 1 else group[0].title
        out.append(f"## {number}. {title}\n")
        for p in group:
            if len(group) > 1:
                out.append(f"### {p.title}\n")
            out.append(f"{p.claim}\n")
            out.append("```\n" + "\n".join(p.commands) + "\n```\n")
            if (p.dir / "done.json").is_file():
                try:
                    body = p.render(p.dir)
                except (OSError, KeyError, ValueError) as e:
                    body = f"(could not read this part's results: {type(e).__name__}: {e}; rerun `make results`)"
                done = json.loads((p.dir / "done.json").read_text())
                on = f" on {done['cpu']}" if done.get("cpu") else ""
                body += f"\n\n_Measured {done['finished']}{on}; the commands took {done['seconds'] / 60:.1f} min._"
            else:
                make = "make results-long" if p.long else "make results"
                body = earlier_body(earlier, p) or f"Not measured yet: `{make}` runs it."
            out.append(body + "\n")
    if PRESETS.is_file():
        out.append(PRESETS.read_text())
    return "\n".join(out).rstrip() + "\n"


def write_page(parts: list[Part]) -> None:
    text = render_page(parts, PAGE.read_text() if PAGE.is_file() else "")
    tmp = PAGE.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(PAGE)
    print(f"wrote {PAGE.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help="comma-separated parts (default: all)")
    ap.add_argument("--force", action="store_true", help="rerun the parts even if up to date")
    ap.add_argument("--jobs", type=int, default=2, help="parts run at once (default 2, one per core)")
    ap.add_argument("--list", action="store_true", help="print the parts and whether they are stale")
    ap.add_argument("--render", action="store_true", help="only rewrite the page")
    ap.add_argument("--long", action="store_true", help="the long parts (`make results-long`) instead of the others")
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - {p.name for p in PARTS})
    if unknown:
        ap.error(f"unknown part(s) {', '.join(unknown)}; the parts are {', '.join(p.name for p in PARTS)}")
    chosen = [p for p in PARTS if p.name in names] if names else [p for p in PARTS if p.long == args.long]
    if args.list:
        for p in PARTS:
            why = p.stale()
            long = " (make results-long)" if p.long else ""
            print(f"{p.name:<20} ~{p.minutes:>4.0f} min  {'stale: ' + why if why else 'up to date'}{long}")
        return 0
    failed = []
    if not args.render:
        todo = [p for p in chosen if args.force or p.stale()]
        for p in chosen:
            print(f"{p.name:<20} {'runs (' + (p.stale() or 'forced') + ')' if p in todo else 'up to date, skipped'}")
        todo.sort(key=lambda p: -p.minutes)  # longest first, so two workers finish together
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for name, seconds, error in pool.map(run_part, todo):
                print(f"{name:<20} {'failed: ' + error if error else 'done'} in {seconds / 60:.1f} min", flush=True)
                if error:
                    failed.append(name)
    write_page(PARTS)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
