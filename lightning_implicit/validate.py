"""Numeric options checked at the command-line edge, before any data is built or any run is opened.

:func:`check_config` reads a parsed LightningCLI config and raises one :class:`ConfigError` naming the option,
the value and what is accepted (the CLI prints it as ``error: ...`` and exits 2, without a traceback).
"""

from __future__ import annotations

import math

__all__ = ["ConfigError", "check_config"]


class ConfigError(ValueError):
    """A configuration value that no run can use."""


def _get(cfg, dotted: str):
    node = cfg
    for part in dotted.split("."):
        if node is None:
            return None
        node = node.get(part) if hasattr(node, "get") else getattr(node, part, None)
    return node


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _non_finite(node, prefix: str = ""):
    """``(dotted key, value)`` of the first NaN or infinite number anywhere in ``node``, else ``None``."""
    if isinstance(node, float) and not math.isfinite(node):
        return prefix, node
    if isinstance(node, dict) or type(node).__name__ == "Namespace":
        items = node.items() if isinstance(node, dict) else vars(node).items()
        for k, v in items:
            found = _non_finite(v, f"{prefix}.{k}" if prefix else str(k))
            if found is not None:
                return found
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            found = _non_finite(v, f"{prefix}[{i}]")
            if found is not None:
                return found
    return None


def check_config(cfg) -> None:
    """Raise :class:`ConfigError` for the first invalid numeric option of ``cfg`` (a jsonargparse namespace):
    any NaN or infinite number, then the options below."""
    found = _non_finite(cfg)
    if found is not None:
        key, value = found
        raise ConfigError(f"--{key} {value}: must be a finite number (not NaN or infinite)")
    epochs, steps = _get(cfg, "trainer.max_epochs"), _get(cfg, "trainer.max_steps")
    bounded = isinstance(steps, int) and steps >= 1  # -1 epochs with a step budget: the tuned recipes
    if epochs is not None and (not isinstance(epochs, int) or epochs < 1) and not (epochs == -1 and bounded):
        raise ConfigError(
            f"--trainer.max_epochs {epochs}: must be a whole number >= 1 (0 would record an untrained model as a "
            f"finished run; an endless run (-1) never ends: bound it with --trainer.max_steps instead)"
        )
    if steps is not None and steps != -1 and (not isinstance(steps, int) or steps < 1):
        raise ConfigError(f"--trainer.max_steps {steps}: must be a whole number >= 1 (or -1: no step limit)")
    precision, model = _get(cfg, "trainer.precision"), str(_get(cfg, "model.class_path") or "")
    if str(precision) in ("16-true", "bf16-true") and model.endswith("ImplicitModule"):
        raise ConfigError(
            f"--trainer.precision {precision}: an implicit model's fixed-point solve needs float32 weights (a "
            "tolerance of 3e-6 is below half-precision resolution); use --trainer.precision bf16-mixed or "
            "16-mixed (the solve stays in float32, the rest runs in half precision) or 32-true"
        )
    for key in ("batch_size", "eval_batch_size"):
        v = _get(cfg, f"data.init_args.{key}")
        if v is not None and v != "full" and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            allowed = "a whole number >= 1 or 'full'" if key == "batch_size" else "a whole number >= 1"
            raise ConfigError(f"--data.init_args.{key} {v!r}: must be {allowed}")
    kappa = _get(cfg, "model.init_args.kappa")
    if kappa is not None and (not _number(kappa) or not 0 < kappa < 1):
        raise ConfigError(
            f"--model.init_args.kappa {kappa!r}: must be a number in (0, 1), e.g. 0.95 (the row-sum bound of A: "
            "||A||_inf <= kappa < 1 keeps the model well-posed)"
        )
    lr = _get(cfg, "model.init_args.optim.lr")
    if lr is not None and (not _number(lr) or lr <= 0):
        raise ConfigError(f"--model.init_args.optim.lr {lr!r}: must be a finite number > 0")
    data = _get(cfg, "data.init_args") or {}
    items = data.items() if hasattr(data, "items") else vars(data).items()
    for key, v in items:
        if "shift" in key.lower() and isinstance(v, (list, tuple)):
            if not v:
                raise ConfigError(f"--data.init_args.{key} []: give at least one shift")
            bad = [x for x in v if not _number(x)]
            if bad:
                raise ConfigError(
                    f"--data.init_args.{key} {list(v)!r}: every shift must be a finite number, not {bad[0]!r}"
                )
