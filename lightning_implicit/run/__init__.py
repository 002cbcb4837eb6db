"""What a run is: :class:`~lightning_implicit.run.spec.RunSpec` (task, model, seed, trainer and the ordered
override layers) and how it becomes LightningCLI input."""

from .spec import PRECEDENCE, QUIET_TRAINER, RunSpec, cli_value, flag_args, parse_flags

__all__ = ["PRECEDENCE", "QUIET_TRAINER", "RunSpec", "cli_value", "flag_args", "parse_flags"]
