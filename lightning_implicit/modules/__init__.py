"""LightningModules: thin wrappers (loss, metrics, hooks) around the models."""

from .base import ShiftModule
from .baseline import BaselineModule
from .implicit import ImplicitModule
from .optim import OptimConfig

__all__ = ["ShiftModule", "ImplicitModule", "BaselineModule", "OptimConfig"]
