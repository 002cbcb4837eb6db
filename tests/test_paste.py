"""Every command the end-of-run summary prints works pasted as it is into a fresh shell from the repo root
(issue 31): no activated virtualenv, no MLFLOW_TRACKING_URI, no CONF_PATH in that shell. The run is of a task
added from outside the repo (``LIGHTNING_IMPLICIT_CONF_PATH``), with a non-integer shift grid."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest

REPO = Path(__file__).resolve().parents[1]

TASK_PY = '''
from lightning_implicit.data import SyntheticShiftDataModule, TaskSpec


class MaximumDataModule(SyntheticShiftDataModule):
    """y = max(u) over U(0, 1)^4, tested on U(0, kappa)^4."""

    default_shifts = (1.5, 10)

    def __init__(self, **kw):
        super().__init__(**kw)
        self.spec = TaskSpec(name="maximum", kind="regression", in_shape=(4,), target_shape=(1,),
                             metrics=("mse",), presets={"implicit": {"hidden_features": 6}})

    def sample(self, rng, n, shift):
        x = rng.uniform(0, 1.0 if shift is None else shift, size=(n, 4))
        return x, x.max(axis=1, keepdims=True)
'''

TASK_YAML = """
data:
  class_path: maximum_paste_task.MaximumDataModule
  init_args: {n_train: 200, n_test: 50, batch_size: 50}
trainer:
  max_epochs: 1
"""


def _fresh_shell_env() -> dict[str, str]:
    """A new login's environment: no virtualenv on PATH, no tracking URI, no config path."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
    }


@pytest.mark.slow
def test_every_printed_command_works_pasted_into_a_fresh_shell(tmp_path):
    mine = tmp_path / "mine"
    (mine / "tasks").mkdir(parents=True)
    (mine / "maximum_paste_task.py").write_text(textwrap.dedent(TASK_PY))
    (mine / "tasks" / "maximum.yaml").write_text(textwrap.dedent(TASK_YAML))
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "LIGHTNING_IMPLICIT_CONF_PATH": str(mine), "PORT": "1"}
    train = [
        sys.executable,
        "-m",
        "lightning_implicit.cli",
        "train",
        "--task",
        "maximum",
        "--model",
        "implicit",
    ]
    train += [
        "--trainer.default_root_dir",
        str(tmp_path / "lightning"),
        "--trainer.enable_progress_bar",
        "false",
    ]
    out = subprocess.run(train, env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    summary = dict(
        line.split(":", 1) for line in out.stdout.split("== run summary ==", 1)[1].splitlines() if ":" in line
    )
    summary = {k.strip(): v.strip() for k, v in summary.items()}
    run_id = summary["run"].rsplit("(", 1)[1].rstrip(")")
    run = mlflow.MlflowClient(uri).get_run(run_id)
    assert run.data.tags["conf_path"] == str(mine)  # recorded on the run, and carried by the re-test line
    assert run.data.params["data.shift_step"] == "shift x 10"
    assert f"LIGHTNING_IMPLICIT_CONF_PATH={shlex.quote(str(mine))}" in summary["re-test"]
    checkpoint = Path(shlex.split(summary["checkpoint"])[0])
    assert (checkpoint if checkpoint.is_absolute() else REPO / checkpoint).is_file()
    assert checkpoint.suffix == ".ckpt" and "checkpoints" in checkpoint.parts

    for key, expected in (("model", "ImplicitModule"), ("re-test", "ood")):
        pasted = subprocess.run(
            ["bash", "-c", summary[key]],
            env=_fresh_shell_env(),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert pasted.returncode == 0, f"{key}: {summary[key]}\n{(pasted.stdout + pasted.stderr)[-3000:]}"
        assert expected in pasted.stdout, f"{key}: {pasted.stdout[-2000:]}"
    assert not (REPO / "mlflow.db").exists()  # (a paste without the URI left a stray store in the repo root)
