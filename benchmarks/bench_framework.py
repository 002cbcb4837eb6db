"""Framework overhead: ``lightning-implicit train`` per epoch against a plain PyTorch loop, and start-up time.

For each case (the implicit model on addition, the implicitRNN on rolling average, the depth-encoder Transformer
on addition; Table 4 sizes, batch 64, Adam, one thread) the same module is built from the same config files and
trained by the framework with the default Trainer settings of ``make train`` (``run_training``: Lightning's
automatic optimisation, a checkpoint written every epoch, MLflow logging into a temporary store, validation
every epoch, the progress bar), by the framework with the opt-in speed path (``--data.init_args.steps_per_call
16``: several optimiser steps per Lightning step, :mod:`lightning_implicit.modules.multistep`), and by a plain
loop doing the same work: the same mini-batches in the same order (indexed from the in-memory tensors by the
permutation the framework's sampler draws), the task's loss, ``Adam``, the implicit models' projection after each
step, a validation pass and a ``torch.save`` of the weights and the optimiser's state per epoch. The largest
difference between the trained weights is printed (0 when they train bit for bit alike; a solver's iteration
count, hence its cost, follows the weights).
Runs of the two alternate within this process; the printed ratio is the median framework epoch over the median
plain epoch (and, less sensitive to other processes on a shared machine, the fastest over the fastest: the two
runs do the same work, so their fastest epochs differ by the framework's own cost), and the ratio of the
process's CPU time per epoch (all its threads: the progress bar's and MLflow's count; time spent waiting for other
processes does not), the least sensitive of the three to a shared machine's load.

Start-up: a fresh ``python -m lightning_implicit.cli train`` process, from ``Popen`` to its first training batch
(reported by a callback added with ``--trainer.callbacks+``), and ``lightning-implicit --help``.

Run alone: ``python -m benchmarks.bench_framework [--epochs 3] [--repeats 4] [--samples 10000]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

ROOT = Path(__file__).resolve().parents[1]
CASES = [("addition", "implicit"), ("rolling_average", "implicit_rnn"), ("addition", "depth_encoder")]


class EpochTimer(L.Callback):
    """Wall time of each training epoch, from its start to the next one's (the last: to the end of training), so
    that its validation, logging and the checkpoint written at its end (ModelCheckpoint runs after every other
    callback's ``on_train_epoch_end``) are all counted."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.cpu: list[float] = []  # the process's CPU time (all its threads) over the same laps
        self.t0: tuple[float, float] | None = None

    def _lap(self) -> None:
        now = (time.perf_counter(), time.process_time())
        if self.t0 is not None:
            self.times.append(now[0] - self.t0[0])
            self.cpu.append(now[1] - self.t0[1])
        self.t0 = now

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._lap()

    def on_train_end(self, trainer, pl_module) -> None:
        self._lap()


class FirstStep(L.Callback):
    """Writes the wall-clock time of the first training batch to ``$BENCH_FIRST_STEP_FILE`` (start-up probe)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        path = os.environ.get("BENCH_FIRST_STEP_FILE")
        if path and batch_idx == 0 and trainer.current_epoch == 0:
            Path(path).write_text(repr(time.time()))


def _args(task: str, model: str, samples: int, epochs: int, uri: str) -> list[str]:
    from lightning_implicit.runner import shorthand_args

    return shorthand_args(task, model) + [
        "--trainer.max_epochs",
        str(epochs),
        "--data.init_args.n_train",
        str(samples),
        "--data.init_args.n_test",
        "200",
        "--trainer.default_root_dir",
        str(Path(uri.removeprefix("sqlite:///")).parent / "lightning"),
        "--tracking.uri",
        uri,
        "--tracking.experiment",
        "bench-framework",
    ]


def _plain_epochs(
    task: str, model: str, samples: int, epochs: int, uri: str
) -> tuple[list[float], list[float], dict]:
    """A plain PyTorch loop over the same module, data and optimiser (no Lightning Trainer, no DataLoader): the
    mini-batches are indexed from in-memory tensors by the permutation the framework's sampler draws from the
    same seeded generator (the same mini-batches in the same order). Returns the epoch times (wall, CPU) and the
    weights."""
    from lightning_implicit.runner import ImplicitCLI

    cli = ImplicitCLI(args=_args(task, model, samples, epochs, uri) + ["--tracking.enabled", "false"])
    module, dm = cli.model, cli.datamodule
    dm.setup("fit")
    xt, yt, _ = dm.train_set.tensors
    xv, yv, _ = dm.val_set.tensors
    bs, ebs = dm.train_batch_size, dm.eval_batch_size
    g = torch.Generator().manual_seed(dm.seed)  # what the datamodule's RandomSampler draws from
    opt = torch.optim.Adam(module.parameters(), lr=module.optim.lr)
    project = getattr(module.net, "project_", None)
    loss_fn = module.task.loss
    ckpt = Path(uri.removeprefix("sqlite:///")).parent / "plain.ckpt"
    times, cpu = [], []
    for _ in range(epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        module.train()
        # Per epoch a DataLoader's iterator draws a base seed from its generator, then its RandomSampler the
        # permutation, and one more (for ``num_samples % n`` samples) when the batch sampler reads past it.
        torch.empty((), dtype=torch.int64).random_(generator=g)
        perm = torch.randperm(len(xt), generator=g)
        if (
            len(xt) % bs
        ):  # (Lightning stops after the last batch it counted: a sampler cut exactly is not resumed)
            torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), bs):
            idx = perm[i : i + bs]
            x, y = xt[idx], yt[idx]
            loss = loss_fn(module.predict_batch(x, y), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if project is not None:
                project()
        module.eval()
        # Lightning's validation DataLoader (no generator of its own) draws its iterator's base seed from the
        # global RNG: drawn here too, so that the next epoch's dropout masks match.
        torch.empty((), dtype=torch.int64).random_()
        with torch.no_grad():
            for i in range(0, len(xv), ebs):
                x, y = xv[i : i + ebs], yv[i : i + ebs]
                loss_fn(module.predict_batch(x, y), y)
        # what the default ModelCheckpoint writes every epoch: the weights and the optimiser's state
        torch.save({"state_dict": module.state_dict(), "optimizer": opt.state_dict()}, ckpt)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return times, cpu, module.state_dict()


def _framework_epochs(
    task: str, model: str, samples: int, epochs: int, uri: str, steps_per_call: int = 1
) -> tuple[list[float], list[float], dict]:
    from lightning_implicit.runner import run_training

    timer = EpochTimer()
    args = _args(task, model, samples, epochs, uri) + ["--data.init_args.steps_per_call", str(steps_per_call)]
    res = run_training(args, extra_callbacks=[timer], test=False)
    return timer.times, timer.cpu, res.module.state_dict()


def _max_difference(a: dict, b: dict) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].is_floating_point())


# What any Lightning training process imports before its first step (torch, torchmetrics and, through them,
# torch._dynamo, scipy.signal, matplotlib): the floor under the start-up time, whatever this project does.
STACK_IMPORTS = "import lightning"


def startup(uri: str, repeats: int = 3) -> tuple[list[float], list[float], list[float]]:
    """Seconds from ``Popen`` to the first training batch of ``train``, of ``lightning-implicit --help``, and of a
    process that only imports the stack (:data:`STACK_IMPORTS`)."""
    first, helps, floor = [], [], []
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1"}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            probe = Path(tmp) / "first"
            env["BENCH_FIRST_STEP_FILE"] = str(probe)
            cmd = [
                sys.executable,
                "-m",
                "lightning_implicit.cli",
                "train",
                "--task",
                "addition",
                "--model",
                "implicit",
                "--trainer.max_epochs",
                "1",
                "--trainer.limit_train_batches",
                "2",
                "--trainer.limit_val_batches",
                "1",
                "--data.init_args.n_test",
                "100",
                "--trainer.enable_checkpointing",
                "false",
                "--tracking.experiment",
                "bench-startup",
                "--trainer.callbacks+",
                "benchmarks.bench_framework.FirstStep",
            ]
            t0 = time.time()
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
            if proc.returncode != 0 or not probe.exists():
                print(proc.stdout[-2000:], proc.stderr[-4000:], sep="\n")
                raise RuntimeError("start-up probe failed")
            first.append(float(probe.read_text()) - t0)
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "lightning_implicit.cli", "--help"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            check=True,
        )
        helps.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", STACK_IMPORTS], cwd=ROOT, env=env, check=True)
        floor.append(time.perf_counter() - t0)
    return first, helps, floor


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_framework")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is dropped)")
    p.add_argument("--repeats", type=int, default=4, help="interleaved plain/framework rounds per case")
    p.add_argument("--samples", type=int, default=10_000, help="in-distribution samples (80 %% train)")
    p.add_argument("--cases", nargs="*", default=None, help="task:model pairs (default: all three)")
    p.add_argument("--skip-startup", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    cases = [tuple(c.split(":")) for c in a.cases] if a.cases else CASES
    print(
        f"[framework] per-epoch time, framework (`run_training`, make train's Trainer: checkpoint every epoch, "
        f"MLflow logging, validation, progress bar) / plain loop (the same steps, a validation pass and a "
        f"torch.save per epoch); {a.samples} samples, batch 64, 1 thread, {a.repeats} interleaved rounds of "
        f"{a.epochs} epochs (first epoch of each dropped); load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        ratios = {}
        for task, model in cases:
            plain, frame, fast, diffs = [], [], [], []
            cplain, cframe, cfast = [], [], []
            for _ in range(a.repeats):
                tp, cp, wp = _plain_epochs(task, model, a.samples, a.epochs, uri)
                tf, cf, wf = _framework_epochs(task, model, a.samples, a.epochs, uri)
                ts, cs, ws = _framework_epochs(task, model, a.samples, a.epochs, uri, steps_per_call=16)
                plain, frame, fast = plain + tp[1:], frame + tf[1:], fast + ts[1:]
                cplain, cframe, cfast = cplain + cp[1:], cframe + cf[1:], cfast + cs[1:]
                diffs += [_max_difference(wp, wf), _max_difference(wp, ws)]
            mp, mf, ms = statistics.median(plain), statistics.median(frame), statistics.median(fast)
            ratios[(task, model)] = mf / mp
            cp, cf, cs = statistics.median(cplain), statistics.median(cframe), statistics.median(cfast)
            print(
                f"  {task}/{model:<14} plain {mp * 1e3:7.1f} ms/epoch   framework {mf * 1e3:7.1f} ms/epoch   "
                f"ratio {mf / mp:5.2f}x   (target <= 1.3x; of the fastest epochs {min(frame) / min(plain):.2f}x; "
                f"CPU time {cf * 1e3:.1f} / {cp * 1e3:.1f} ms = {cf / cp:.2f}x)   "
                f"speed path (steps_per_call 16) {ms * 1e3:7.1f} ms/epoch, ratio {ms / mp:5.2f}x "
                f"(fastest {min(fast) / min(plain):.2f}x, CPU time {cs / cp:.2f}x); "
                f"trained weights differ by at most {max(diffs):.1e}; load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
        if not a.skip_startup:
            first, helps, floor = startup(uri)
            m, f = statistics.median(first), statistics.median(floor)
            print(
                f"  start-up: process start to first training step {m:.2f} s (min {min(first):.2f}; target <= 2 s), "
                f"of which `{STACK_IMPORTS}` alone {f:.2f} s and the rest (this project, MLflow, the data) "
                f"{m - f:.2f} s; `lightning-implicit --help` {statistics.median(helps):.2f} s",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
