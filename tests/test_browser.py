"""The MLflow UI in a headless browser: two runs of one task, their compare view and the OOD curve chart.

``LIGHTNING_IMPLICIT_SCREENSHOTS=docs/figures`` also copies the OOD chart of the two compared runs there as
``mlflow_compare.png``, the README's screenshot:
``LIGHTNING_IMPLICIT_SCREENSHOTS=docs/figures .venv/bin/python -m pytest tests/test_browser.py``.

Needs Debian's ``chromium`` and ``chromium-driver`` (``scripts/install-system-deps.sh`` installs them);
selenium talks to ``/usr/bin/chromedriver`` directly (no browser or driver downloads). Without them the
test fails, naming the script; ``LIGHTNING_IMPLICIT_SKIP_BROWSER=1`` skips it instead.
``LIGHTNING_IMPLICIT_CHROMIUM`` / ``LIGHTNING_IMPLICIT_CHROMEDRIVER`` point at other binaries.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
from pathlib import Path

import pytest
from test_mlflow_server import MlflowServer

CHROMIUM = os.environ.get("LIGHTNING_IMPLICIT_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("LIGHTNING_IMPLICIT_CHROMEDRIVER", "/usr/bin/chromedriver")
EXPERIMENT = "browser-addition"
WAIT_S = 45


def _require_browser() -> None:
    if os.environ.get("LIGHTNING_IMPLICIT_SKIP_BROWSER") == "1":
        pytest.skip("LIGHTNING_IMPLICIT_SKIP_BROWSER=1")
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (Path(p).is_file() and os.access(p, os.X_OK))]
    if missing:
        pytest.fail(
            f"headless browser test needs {' and '.join(missing)} (Debian packages chromium, chromium-driver): "
            "run `sudo scripts/install-system-deps.sh`, or set LIGHTNING_IMPLICIT_SKIP_BROWSER=1 to skip",
            pytrace=False,
        )
    try:
        import selenium  # noqa: F401 - only whether it is installed
    except ImportError:
        pytest.fail("selenium is missing: pip install -e '.[dev]'", pytrace=False)


def _store_with_two_runs(
    root: Path, shifts=("[10, 100, 1000]", "[10, 100, 1000]"), experiment: str = EXPERIMENT
) -> tuple[str, str, list[tuple[str, str]]]:
    """Two short fits (seeds 0 and 1, on ``shifts[seed]``) of one task tracked to ``root/mlflow.db``: (uri, exp
    id, runs)."""
    import mlflow

    from lightning_implicit.runner import run_training, shorthand_args

    uri = f"sqlite:///{root / 'mlflow.db'}"
    runs = []
    for seed in (0, 1):
        args = shorthand_args("addition", "implicit", seed=seed) + [
            "--trainer.max_epochs",
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
            shifts[seed],
            "--tracking.uri",
            uri,
            "--tracking.experiment",
            experiment,
        ]
        res = run_training(args)
        runs.append((res.run_id, f"implicit-seed{seed}"))
    exp = mlflow.MlflowClient(uri).get_experiment_by_name(experiment)
    return uri, exp.experiment_id, runs


def _driver(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1600,1000",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(flag)
    service = Service(executable_path=CHROMEDRIVER, log_output=str(profile.parent / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=opts)
    driver.set_page_load_timeout(WAIT_S)
    return driver


class Page:
    """Waits on a React page; on a timeout saves a screenshot and the DOM next to the test's files."""

    def __init__(self, driver, shots: Path) -> None:
        self.d, self.shots = driver, shots

    def body_text(self) -> str:
        from selenium.webdriver.common.by import By

        return self.d.find_element(By.TAG_NAME, "body").text

    def wait(self, cond, what: str, timeout: float = WAIT_S):
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.d, timeout, poll_frequency=0.25).until(lambda d: cond(d))
        except TimeoutException:
            shot = self.shots / "timeout.png"
            self.d.save_screenshot(str(shot))
            (self.shots / "timeout.html").write_text(self.d.page_source)
            pytest.fail(
                f"MLflow UI: timed out after {timeout} s waiting for {what} at {self.d.current_url}; "
                f"screenshot {shot}",
                pytrace=False,
            )

    def wait_text(self, *texts: str) -> None:
        self.wait(lambda d: all(t in self.body_text() for t in texts), f"text {texts}")

    def shot(self, name: str) -> Path:
        path = self.shots / name
        self.d.save_screenshot(str(path))
        print(f"screenshot: {path}")
        return path


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_mlflow_ui_compares_two_runs_and_charts_ood_metric(tmp_path):
    _require_browser()
    from selenium.webdriver.common.by import By

    _, exp_id, runs = _store_with_two_runs(tmp_path)
    server = MlflowServer(tmp_path / "mlflow.db", tmp_path / "artifacts", tmp_path / "server.log").start()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    driver = None
    try:
        driver = _driver(tmp_path / "chrome-profile")
        page = Page(driver, shots)
        base = server.url

        # the experiment list links to our experiment
        driver.get(base + "/#/experiments")
        link = page.wait(
            lambda d: d.find_elements(By.LINK_TEXT, EXPERIMENT), f"experiment link {EXPERIMENT!r}"
        )[0]
        assert link.get_attribute("href").split("#")[1].startswith(f"/experiments/{exp_id}")

        # its runs table lists both runs
        driver.get(f"{base}/#/experiments/{exp_id}/runs")
        page.wait_text(*(name for _, name in runs))
        page.shot("runs.png")

        # the compare view of the two runs lists the OOD metrics and draws a chart
        ids = [rid for rid, _ in runs]
        q = urllib.parse.urlencode({"runs": json.dumps(ids), "experiments": json.dumps([exp_id])})
        driver.get(f"{base}/#/compare-runs?{q}")
        page.wait_text(f"Comparing {len(ids)} Runs")
        metric_links = page.wait(
            lambda d: d.find_elements(By.CSS_SELECTOR, 'a[href*="metric=%22ood%2Fmse%22"]'),
            "ood/mse in the metrics table",
        )
        page.wait(
            lambda d: d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot svg.main-svg"), "a plotly chart"
        )
        assert "ood/" in driver.page_source
        page.shot("compare.png")

        # following the metric: the OOD curve (step = shift) of both runs in one chart
        driver.get(metric_links[0].get_attribute("href"))
        page.wait(
            lambda d: (
                len(d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .scatterlayer g.trace")) >= len(ids)
            ),
            "one curve per run",
        )
        page.wait_text(*(f"{name} (ood/mse)" for _, name in runs))
        page.wait_text("Step")
        path = page.shot("ood_mse.png")
        assert path.stat().st_size > 10_000
        docs = os.environ.get("LIGHTNING_IMPLICIT_SCREENSHOTS")
        if docs:  # the compare view's OOD chart, for the README
            Path(docs).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, Path(docs) / "mlflow_compare.png")
            print(f"screenshot copied to {Path(docs) / 'mlflow_compare.png'}")
    finally:
        if driver is not None:
            driver.quit()
        server.stop()
    assert not server.group_alive()
    shutil.rmtree(tmp_path / "chrome-profile", ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_mlflow_ui_charts_non_integer_shifts_of_two_runs_on_one_axis(tmp_path):
    """Shifts 1.5 / 2.5 and 10: both runs log at step = shift x 10, so the UI's ood/mse chart puts shift 10 of
    both runs at the same x (issue 31: a non-integer grid must not shift one run's curve against the other)."""
    _require_browser()
    from selenium.webdriver.common.by import By

    _, exp_id, runs = _store_with_two_runs(tmp_path, ("[1.5, 10]", "[2.5, 10]"), "browser-shift-axis")
    server = MlflowServer(tmp_path / "mlflow.db", tmp_path / "artifacts", tmp_path / "server.log").start()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    driver = None
    try:
        driver = _driver(tmp_path / "chrome-profile")
        page = Page(driver, shots)
        ids = [rid for rid, _ in runs]
        q = urllib.parse.urlencode({"runs": json.dumps(ids), "experiments": json.dumps([exp_id])})
        driver.get(f"{server.url}/#/compare-runs?{q}")
        link = page.wait(
            lambda d: d.find_elements(By.CSS_SELECTOR, 'a[href*="metric=%22ood%2Fmse%22"]'), "ood/mse link"
        )[0]
        driver.get(link.get_attribute("href"))
        page.wait(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .scatterlayer g.trace")) >= 2,
            "one curve per run",
        )
        traces = driver.execute_script(
            "return Array.from(document.querySelectorAll('.js-plotly-plot')).flatMap("
            "p => (p.data || []).map(t => [String(t.name), Array.from(t.x || []).map(Number)]))"
        )
        page.shot("shift_axis.png")
    finally:
        if driver is not None:
            driver.quit()
        server.stop()
    xs = {name.split(" ")[0]: sorted(x) for name, x in traces}  # (plotly draws each run's line and markers)
    assert xs == {"implicit-seed0": [15, 100], "implicit-seed1": [25, 100]}, traces
    shutil.rmtree(tmp_path / "chrome-profile", ignore_errors=True)
