"""A run tracked to an MLflow tracking server over HTTP (``make server``), read back through the REST API.

The server runs on a free local port with a temporary sqlite backend and a served artifact root
(``--artifacts-destination``: clients upload artifacts over HTTP, as on a shared server), and is stopped
by its process group at the end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

MLFLOW = Path(sys.executable).with_name("mlflow")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """``mlflow server`` (one worker, job execution off: ~6 s to start on 2 idle cores) in its own session.

    Args:
        db: sqlite file of the backend store.  artifacts: ``--artifacts-destination`` folder.
        startup_timeout: seconds to wait for ``/health``.
    """

    def __init__(self, db: Path, artifacts: Path, log: Path, startup_timeout: float = 90.0) -> None:
        self.db, self.artifacts, self.log_path = Path(db), Path(artifacts), Path(log)
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> MlflowServer:
        cmd = [
            str(MLFLOW),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.db}",
            "--artifacts-destination",
            str(self.artifacts),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.db.parent,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"mlflow server exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"mlflow server not healthy after {self.startup_timeout} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text()[-n:]
        except OSError:
            return ""

    def group_alive(self) -> bool:
        if self.proc is None:
            return False
        try:
            os.killpg(self.proc.pid, 0)
            return True
        except ProcessLookupError:
            return False

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the whole process group (server + workers), SIGKILL after ``timeout`` s."""
        if self.proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.group_alive():
                self.proc.poll()  # reap the leader
                time.sleep(0.2)
            if not self.group_alive():
                break
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()

    # ---- REST ---------------------------------------------------------------------------------
    def get(self, endpoint: str, **params) -> dict:
        q = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{endpoint}?{q}", timeout=30) as r:
            return json.loads(r.read())

    def post(self, path: str, body: dict) -> dict:
        req = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def raw(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return r.read()


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_fit_against_tracking_server_and_read_back_over_rest(tmp_path):
    from lightning_implicit.runner import run_training, shorthand_args

    server = MlflowServer(tmp_path / "mlflow.db", tmp_path / "artifacts", tmp_path / "server.log")
    server.start()
    try:
        shifts = [10, 100, 1000]
        args = shorthand_args("addition", "implicit", seed=0) + [
            "--trainer.max_epochs",
            "1",
            "--trainer.log_every_n_steps",
            "1",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.enable_model_summary",
            "false",
            "--trainer.enable_checkpointing",
            "false",
            "--data.init_args.n_train",
            "200",
            "--data.init_args.n_test",
            "50",
            "--data.init_args.shifts",
            json.dumps(shifts),
            "--tracking.uri",
            server.url,
            "--tracking.experiment",
            "server-addition",
        ]
        res = run_training(args)
        assert res.run_id

        exp = server.get("/api/2.0/mlflow/experiments/get-by-name", experiment_name="server-addition")
        exp_id = exp["experiment"]["experiment_id"]
        assert exp["experiment"]["artifact_location"].startswith("mlflow-artifacts:")
        found = server.post("/api/2.0/mlflow/runs/search", {"experiment_ids": [exp_id], "max_results": 10})
        runs = found.get("runs", [])
        assert [r["info"]["run_id"] for r in runs] == [res.run_id]
        run = runs[0]
        assert run["info"]["status"] == "FINISHED"
        tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
        assert tags["task"] == "addition" and tags["model"] == "implicit"

        hist = server.get("/api/2.0/mlflow/metrics/get-history", run_id=res.run_id, metric_key="ood/mse")
        points = sorted((int(m["step"]), m["value"]) for m in hist["metrics"])
        assert [s for s, _ in points] == shifts
        by_shift = {r["shift"]: r["mse"] for r in res.sweep}
        for s, v in points:
            assert v == pytest.approx(by_shift[s], rel=1e-6)

        # the TrackingCallback's artifacts went through the server's artifact proxy
        listed = server.get("/api/2.0/mlflow/artifacts/list", run_id=res.run_id, path="sweep")
        names = {f["path"] for f in listed.get("files", [])}
        assert {"sweep/shift_sweep.csv", "sweep/shift_sweep.json", "sweep/shift_sweep.png"} <= names
        csv_text = server.raw(f"/get-artifact?path=sweep/shift_sweep.csv&run_uuid={res.run_id}").decode()
        assert csv_text.splitlines()[0].startswith("shift,n,mse")
        assert len(csv_text.strip().splitlines()) == 1 + len(shifts)
        on_disk = list((tmp_path / "artifacts").rglob("shift_sweep.png"))
        assert len(on_disk) == 1 and on_disk[0].stat().st_size > 1000
        assert list((tmp_path / "artifacts").rglob("config.yaml"))
    finally:
        server.stop()
    assert server.proc.returncode is not None, "server process still running"
    assert not server.group_alive(), "server workers still running"
    assert not port_open(server.port), f"port {server.port} still accepts connections"
