"""Distributed data parallel on CPU (gloo): the projection, the reduced statistics and the shift sweep.

* fast: an in-process ``ddp_fork`` run with 2 CPU processes (``ddp_spawn`` works the same but re-imports
  everything in each worker: ~60 s instead of ~15 s on 2 cores). Every rank dumps what it saw to files.
* slow: the real ``ddp`` strategy through the CLI in a subprocess (Lightning re-executes the command as
  rank 1; inside pytest that would re-run pytest, so never in-process), tracked to a temporary sqlite store.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
KAPPA = 0.95
N_TEST = 101  # odd: the distributed sampler pads one rank with a duplicate, which the sweep must drop
SHIFTS = [10, 1000]
DIST_ENV = (
    "MASTER_ADDR",
    "MASTER_PORT",
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "NODE_RANK",
    "GROUP_RANK",
    "LOCAL_WORLD_SIZE",
    "TORCHELASTIC_RUN_ID",
    "SLURM_JOB_ID",
    "SLURM_NTASKS",
    "SLURM_PROCID",
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RankProbe(L.Callback):
    """Each rank writes what it saw to ``folder/{fit,test}_rank<r>.pt`` (each launch forks fresh workers):
    its final ``A``, its local solver statistics of the last training step next to the logged (reduced)
    values, and its shift-sweep rows."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.local_last_step: dict = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        st = pl_module.net.last_stats
        self.local_last_step = {
            "iters_mean": float(st.iterations.float().mean()),
            "iters_max": float(st.iterations.max()),
        }

    def on_fit_end(self, trainer, pl_module) -> None:
        record = {
            "world_size": trainer.world_size,
            "A": pl_module.net.A.detach().clone(),
            "A_inf": pl_module.net.well_posedness(),
            "local_last_step": self.local_last_step,
            # on-step values of the last step as logged, i.e. after the cross-rank reduction
            "logged_last_step": {
                k: float(trainer.callback_metrics[f"train/{k}"]) for k in ("iters_mean", "iters_max", "A_inf")
            },
        }
        torch.save(record, self.folder / f"fit_rank{trainer.global_rank}.pt")

    def on_test_end(self, trainer, pl_module) -> None:
        torch.save({"sweep": pl_module.sweep_results}, self.folder / f"test_rank{trainer.global_rank}.pt")


def _ddp_args(strategy: str, root: Path) -> list[str]:
    from lightning_implicit.runner import shorthand_args

    return shorthand_args("addition", "implicit", trainer="ddp", seed=0, devices=2) + [
        "--trainer.strategy",
        strategy,
        "--trainer.accelerator",
        "cpu",
        "--trainer.max_epochs",
        "2",
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.enable_checkpointing",
        "false",
        "--data.init_args.n_train",
        "320",
        "--data.init_args.n_test",
        str(N_TEST),
        "--data.init_args.shifts",
        str(SHIFTS),
        "--data.init_args.batch_size",
        "32",
        "--data.init_args.eval_batch_size",
        "16",
        "--model.init_args.kappa",
        str(KAPPA),
        "--tracking.enabled",
        "false",
        "--trainer.default_root_dir",
        str(root / "lightning"),
    ]


@pytest.fixture
def dist_env(monkeypatch):
    """A fresh rendezvous port; the launcher's environment changes are undone afterwards."""
    for k in DIST_ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    yield


@pytest.mark.timeout(120)
def test_ddp_two_cpu_ranks_match_single_process(tmp_path, dist_env):
    from lightning_implicit.runner import run_training

    res = run_training(_ddp_args("ddp_fork", tmp_path), extra_callbacks=[RankProbe(tmp_path)])
    recs = [torch.load(tmp_path / f"fit_rank{r}.pt", weights_only=False) for r in range(2)]
    sweeps = [torch.load(tmp_path / f"test_rank{r}.pt", weights_only=False)["sweep"] for r in range(2)]
    assert [r["world_size"] for r in recs] == [2, 2]

    # the projection keeps A identical on every rank, and well posed
    assert torch.equal(recs[0]["A"], recs[1]["A"]), "A differs across ranks"
    for r in recs:
        assert r["A_inf"] <= KAPPA + 1e-6
    # the parent got rank 0's weights back
    assert torch.equal(res.module.net.A.detach(), recs[0]["A"])

    # solver statistics are reduced across ranks (not rank 0's share): mean of means, max of maxima
    local = [r["local_last_step"] for r in recs]
    for r in recs:
        logged = r["logged_last_step"]
        assert logged["iters_mean"] == pytest.approx(sum(x["iters_mean"] for x in local) / 2, rel=1e-6)
        assert logged["iters_max"] == max(x["iters_max"] for x in local)
        assert logged["A_inf"] <= KAPPA + 1e-6

    # the sweep: identical on both ranks, every test sample counted once
    ddp_rows = sweeps[0]
    assert ddp_rows == sweeps[1]
    assert [row["shift"] for row in ddp_rows] == SHIFTS
    assert all(row["n"] == N_TEST for row in ddp_rows)

    # ... and equal to a single-process evaluation of the same weights
    single = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    single.test(res.module, datamodule=res.datamodule, verbose=False)
    ref = res.module.sweep_results
    assert [row["shift"] for row in ref] == SHIFTS
    for a, b in zip(ddp_rows, ref, strict=True):
        assert a["n"] == b["n"] == N_TEST
        for k in ("mse", "mae"):
            assert a[k] == pytest.approx(b[k], rel=1e-5), (a["shift"], k)
        for k in ("iters_mean", "iters_median", "iters_max", "converged_frac"):
            assert a[k] == pytest.approx(b[k], abs=0.05), (a["shift"], k)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def _wait_group_gone(pgid: int, timeout: float) -> bool:
    """Wait until no process of group ``pgid`` is left; True if some still are after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.2)
    return True


def _run_two_ranks(launcher: list[str], tmp_path: Path, uri: str, shifts: list[int], experiment: str) -> str:
    """Run the CLI's ``train`` with 2 CPU ranks under ``launcher`` in its own process group; its output."""
    cmd = launcher + [
        "-m",
        "lightning_implicit.cli",
        "train",
        "--task",
        "addition",
        "--model",
        "implicit",
        "--no-tuned",  # (the config's kappa 0.95, which the A_inf check below reads; not the tuned record's)
        "--trainer",
        "ddp",
        "--devices",
        "2",
        "--trainer.accelerator",
        "cpu",
        "--trainer.max_epochs",
        "2",
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.default_root_dir",
        str(tmp_path / "lightning"),
        "--data.init_args.n_train",
        "200",
        "--data.init_args.n_test",
        "51",
        "--data.init_args.shifts",
        json.dumps(shifts),
        "--tracking.uri",
        uri,
        "--tracking.experiment",
        experiment,
    ]
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV and k != "MLFLOW_TRACKING_URI"}
    env.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(free_port()),
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out = proc.stdout.read() if proc.stdout else ""
        pytest.fail(f"DDP CLI run did not finish in 180 s; output tail:\n{out[-3000:]}")
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    assert proc.returncode == 0, out[-4000:]
    # the other rank exits on its own right after: nothing may be left in the process group
    if _wait_group_gone(proc.pid, timeout=20):
        _kill_group(proc)
        pytest.fail("a rank was still running 20 s after the launcher exited")
    assert "MEMBER: 2/2" in out, out[-3000:]
    assert out.count("MLflow run:") == 1, "the sweep table must be printed by rank 0 only"
    return out


def _the_one_run(uri: str, experiment: str, out: str, shifts: list[int]):
    import mlflow

    client = mlflow.MlflowClient(uri)
    exps = [e for e in client.search_experiments() if e.name != "Default"]
    runs = [r for e in exps for r in client.search_runs([e.experiment_id])]
    assert [e.name for e in exps] == [experiment]
    assert len(runs) == 1, f"expected one MLflow run, got {[r.info.run_id for r in runs]}"
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.info.run_id in out
    hist = client.get_metric_history(run.info.run_id, "ood/mse")
    assert sorted(m.step for m in hist) == shifts, "one ood/mse point per shift"
    return client, run


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_cli_real_ddp_logs_one_mlflow_run(tmp_path):
    """``--trainer ddp --devices 2`` on CPU: Lightning re-runs the command as rank 1; one MLflow run."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    shifts = [10, 100, 1000]
    out = _run_two_ranks([sys.executable], tmp_path, uri, shifts, "ddp-cli")
    client, run = _the_one_run(uri, "ddp-cli", out, shifts)
    a_inf = client.get_metric_history(run.info.run_id, "train/A_inf")
    assert a_inf and max(m.value for m in a_inf) <= KAPPA + 1e-6
    # per-step training metrics are logged once (by rank 0), not once per rank
    steps = [m.step for m in a_inf]
    assert len(steps) == len(set(steps))
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "sweep")}
    assert {"sweep/shift_sweep.csv", "sweep/shift_sweep.png"} <= arts
    rows = json.loads(
        Path(client.download_artifacts(run.info.run_id, "sweep/shift_sweep.json", str(tmp_path))).read_text()
    )
    assert [r["n"] for r in rows] == [51, 51, 51]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_torchrun_ranks_start_together_on_a_fresh_store(tmp_path):
    """torchrun (like SLURM's srun) starts every rank at once: only rank 0 may touch the fresh sqlite store
    (two processes migrating a new MLflow database at the same time fail)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    shifts = [10, 100]
    out = _run_two_ranks(
        [str(torchrun), "--standalone", "--nproc-per-node", "2"], tmp_path, uri, shifts, "torchrun"
    )
    _the_one_run(uri, "torchrun", out, shifts)
