"""From a profile to the list of training runs: arguments, identity (for resuming), cost, rerun command.

Every run is one ``(task, model, seed)`` of the profile, trained through
:func:`lightning_implicit.runner.run_training` with the same config files as ``make train`` plus the
profile's overrides. Its identity is

* ``repro_config_hash``: SHA-256 of the resolved inputs: the text of the trainer/task/model config files and
  the profile's overrides (and the data file's path and size for market data), seed excluded;
* the seed (``seed_everything``, as ``make train SEED=``; data are generated from the task's own data seed);
* the code version ``git_commit`` (:func:`lightning_implicit.tracking.git_commit`).

``repro_key`` combines the three; a FINISHED MLflow run with the same key is reused instead of retrained.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from lightning_implicit import confpath
from lightning_implicit.run.spec import QUIET_TRAINER, RunSpec, cli_value, flag_args, parse_flags
from lightning_implicit.tuned import find_tuned

from .profile import Profile

__all__ = ["Job", "build_jobs", "tuned_recipes"]

# Rough single-thread seconds per 1,000 training samples per epoch (measured on a 2-core CPU), for ordering
# the runs heaviest first and for the first ETA; the ETA then follows the measured pace.
_COST = {
    "implicit": 0.35,
    "implicit_nofeedback": 0.35,
    "implicit_rnn": 1.0,
    "mlp": 0.2,
    "nalu": 0.3,
    "nac": 0.3,
    "seq_encoder": 0.3,
    "depth_encoder": 2.0,
    "encdec": 0.9,
    "encdec_masked": 0.6,
    "encdec_unmasked": 0.5,
    "encdec_nope": 0.5,
    "lstm": 0.3,
    "masked_decoder": 1.2,
    "linear": 0.05,
    "eikonet": 0.25,
}
_TASK_SCALE = {"earthquake": 0.6, "spiky": 0.6, "volatility": 1.0}
_DEFAULT_N = {"spiky": 7_000, "volatility": 10_000}
_OVERHEAD_S = 4.0


@dataclass
class Job:
    task: str
    model: str
    seed: int
    args: list[str]
    overrides: dict[str, object]
    config_hash: str
    key: str
    experiment: str
    cost: float
    trainer: str = "cpu"
    data: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    tuned: str | None = None  # the tuned config this run trains on (conf/tuned/<task>/<model>.yaml)
    tuned_exists: bool = False  # a tuned config exists (used or not): the rerun command must say which

    @property
    def name(self) -> str:
        return f"{self.task}/{self.model} seed={self.seed}"

    def rerun_command(self) -> str:
        """The command that retrains this run (``make train`` when the profile adds nothing)."""
        extra = flag_args(self.overrides)
        if self.task == "volatility":
            extra += ["--data.init_args.allow_download", "false"]
        untuned = self.tuned_exists and not self.tuned  # `train` would pick the tuned recipe up: say not to
        if not extra and self.trainer == "cpu":
            cmd = f"make train TASK={self.task} MODEL={self.model} SEED={self.seed}"
            return (
                cmd
                + (f" DATA={shlex.quote(self.data)}" if self.data else "")
                + (" TUNED=0" if untuned else "")
            )
        parts = [
            ".venv/bin/python",
            "-m",
            "lightning_implicit.cli",
            "train",
            "--task",
            self.task,
            "--model",
            self.model,
            "--seed",
            str(self.seed),
        ]
        if untuned:
            parts.append("--no-tuned")
        if self.trainer != "cpu":
            parts += ["--trainer", self.trainer]
        if self.data:
            parts += ["--data", self.data]
        return shlex.join(parts + extra)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("task", "model", "seed", "args", "key", "experiment", "data")}


def _yaml(kind: str, name: str) -> tuple[str, dict]:
    text = confpath.find(kind, name).read_text()
    return text, (yaml.safe_load(text) or {})


def _estimate(task: str, model: str, overrides: dict, trainer_cfg: dict, task_cfg: dict) -> float:
    """Rough seconds of one run: samples processed x per-sample cost, cheaper per sample in large batches
    (measured: 1,000 full-batch steps on 8,000 sequences cost about as much as 200,000 samples in batches of 64)."""
    init = ((task_cfg.get("data") or {}).get("init_args")) or {}
    epochs = (
        overrides.get("trainer.max_epochs")
        or (task_cfg.get("trainer") or {}).get("max_epochs")
        or ((trainer_cfg.get("trainer") or {}).get("max_epochs") or 20)
    )
    if task == "earthquake":
        coarsen = int(overrides.get("data.init_args.coarsen", init.get("coarsen", 1)))
        n = 720_576 / coarsen**3
    else:
        n = overrides.get("data.init_args.n_train", init.get("n_train", _DEFAULT_N.get(task, 10_000)))
    batch = overrides.get("data.init_args.batch_size", init.get("batch_size", 64))
    batch = 0.8 * float(n) if batch == "full" else float(batch)
    samples = float(epochs) * float(n) if float(epochs) > 0 else 0.0
    steps = overrides.get("trainer.max_steps")
    if steps is not None and float(steps) > 0:
        samples = min(samples, float(steps) * batch) if samples else float(steps) * batch
    per = _COST.get(model, 0.5) * _TASK_SCALE.get(task, 1.0) * min(1.0, (64.0 / max(batch, 1.0)) ** 0.75)
    return _OVERHEAD_S + samples / 1000.0 * per


def _data_identity(data: str | None) -> str | None:
    if not data or data.strip().lower() == "synthetic":
        return data
    p = Path(data)
    size = p.stat().st_size if p.exists() else -1
    return f"{p.resolve()}:{size}"


# An ablation that changes one thing of a model trains on that model's recipe (tuned or not): the implicit model
# with bias terms (the structural reading: what homogeneity alone explains) on the implicit model's.
RECIPE_OF = {"implicit_bias": "implicit"}


def tuned_recipes(profile: Profile, task: str) -> tuple[dict[str, object], str | None]:
    """The tuned configs a task of ``profile`` trains on, and why none are used when some exist.

    The same tuning budget for every model family (the paper tunes "all models"): a task uses tuned recipes
    only when every one of its models has one; otherwise all of its models keep the task's default recipe and
    the reason names the models without one."""
    found, use, why = _tuned_configs(profile, task)
    return (found if use else {}), why


def _tuned_configs(profile: Profile, task: str) -> tuple[dict[str, object], bool, str | None]:
    """Each model's tuned config of ``task`` (``None``: none written), whether the task uses them, and why not."""
    models = profile.tasks[task].models
    found = {m: find_tuned(task, RECIPE_OF.get(m, m)) for m in models}
    have = [m for m, t in found.items() if t is not None]
    if not profile.tuned or not have:
        return found, False, None
    if len(have) < len(models):
        missing = [m for m in models if found[m] is None]
        return (
            found,
            False,
            (
                f"{task}: default recipes for every model: tuned configs exist for {', '.join(have)} but not for "
                f"{', '.join(missing)} (every model family gets the same tuning budget; `make tune TASKS={task}` "
                "tunes them all)"
            ),
        )
    return found, True, None


def build_jobs(
    profile: Profile, *, commit: str, data: str | None = None, data_args: list[str] | None = None
) -> list[Job]:
    """One :class:`Job` per (task, model, seed) of ``profile``, heaviest first.

    ``data`` and ``data_args`` (``--data.init_args.*`` overrides: ticker, time zone, split) go to the task that
    reads a data file (volatility) and are part of its runs' identity."""
    trainer_text, trainer_cfg = _yaml("trainer", profile.trainer)
    jobs: list[Job] = []
    for task, plan in profile.tasks.items():
        task_text, task_cfg = _yaml("tasks", task)
        found, use, _ = _tuned_configs(profile, task)  # each tuned file read once
        for model in plan.models:
            model_text, _ = _yaml("models", model)
            tuned = found[model]
            recipe = tuned.overrides if use else {}
            tuned_args = flag_args(recipe)
            spec = RunSpec(task, model, trainer=profile.trainer)
            spec = spec.with_layer("profile", plan.overrides_for(model)).with_layer("tuned", recipe)
            # a tuned recipe started from the profile's values (its recipe trial): it replaces them
            overrides = {k: v for k, v in spec.layer("profile").items() if k not in recipe}
            task_data = data if task == "volatility" else None
            identity = {
                "task": task,
                "model": model,
                "trainer": trainer_text,
                "task_config": task_text,
                "model_config": model_text,
                "overrides": sorted((k, cli_value(v)) for k, v in overrides.items()),
                "data": _data_identity(task_data),
                "tuned": tuned_args,
                "data_args": list(data_args or []) if task == "volatility" else [],
            }
            config_hash = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
            cost = _estimate(task, model, overrides, trainer_cfg, task_cfg)
            for seed in profile.seeds:
                key = hashlib.sha256(f"{config_hash}|{seed}|{commit}".encode()).hexdigest()[:24]
                tags = {
                    "repro_key": key,
                    "repro_config_hash": config_hash,
                    "repro_profile": profile.name,
                    "repro_task": task,
                    "repro_model": model,
                    "repro_seed": str(seed),
                    "repro_tuned": "true" if tuned_args else "false",
                }
                run: dict[str, object] = {}
                if task == "volatility":
                    run |= {"data.init_args.data": task_data} if task_data else {}
                    run |= {"data.init_args.allow_download": False}
                run |= {
                    "tracking.experiment": profile.experiment(task),
                    "tracking.run_name": f"{model}-seed{seed}",
                    "tracking.tags": tags,
                }
                user = parse_flags(data_args or []) if task == "volatility" else {}
                spec_seed = replace(spec, seed=seed).with_layer("defaults", QUIET_TRAINER)
                args = spec_seed.with_layer("run", run).with_layer("user", user).to_args()
                jobs.append(
                    Job(
                        task=task,
                        model=model,
                        seed=seed,
                        args=args,
                        overrides=overrides,
                        config_hash=config_hash,
                        key=key,
                        experiment=profile.experiment(task),
                        cost=cost,
                        trainer=profile.trainer,
                        data=task_data,
                        tags=tags,
                        tuned=str(tuned.path) if tuned_args else None,
                        tuned_exists=tuned is not None,
                    )
                )
    jobs.sort(key=lambda j: -j.cost)
    return jobs
