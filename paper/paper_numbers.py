"""The paper's published numbers: read from ``numbers.yaml`` beside this module (data, with their citations).

Nothing here is computed: the report prints these beside our measured values, and the verdict rules
(``claims.yaml``, judged by :mod:`.verdicts`) use a few of them as thresholds (named in each claim's text).
"""

from __future__ import annotations

from pathlib import Path

import yaml

__all__ = [
    "resolve_numbers",
    "read_entries",
    "CITATION",
    "TABLE1",
    "TABLE1_MODELS",
    "TABLE2",
    "TABLE2_ROWS",
    "TABLE3",
    "TABLE4_MODELS",
    "ABLATION_TASKS",
    "TEXT_NUMBERS",
    "MODEL_LABELS",
    "label",
]

_NUMBERS = yaml.safe_load((Path(__file__).with_name("numbers.yaml")).read_text())

CITATION: str = _NUMBERS["citation"]
TABLE1: dict[str, dict[str, float | None]] = _NUMBERS["table1"]
TABLE1_MODELS: dict[str, dict[str, str | None]] = _NUMBERS["table1_models"]
TABLE2: dict[str, dict[str, float]] = _NUMBERS["table2"]
TABLE2_ROWS: dict[str, str] = _NUMBERS["table2_rows"]
ABLATION_TASKS: tuple[str, ...] = tuple(_NUMBERS["ablation_tasks"])
TABLE3: dict[str, dict[str, object]] = _NUMBERS["table3"]
TABLE4_MODELS: dict[str, tuple[str, ...]] = {t: tuple(m) for t, m in _NUMBERS["table4_models"].items()}
TEXT_NUMBERS: dict[str, dict[str, object]] = _NUMBERS["text_numbers"]
MODEL_LABELS: dict[str, str] = _NUMBERS["model_labels"]


def label(model: str) -> str:
    """Display name of one of our model configs."""
    return MODEL_LABELS.get(model, model)


def read_entries(path: Path | str, key: str, error: type[Exception]) -> list:
    """The list under the one top-level ``key`` of the YAML file ``path`` (claims.yaml: ``claims``, figures.yaml:
    ``figures``); anything else raises ``error`` naming the file."""
    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(doc, dict) or set(doc) != {key} or not isinstance(doc[key], list):
        raise error(f"{path}: expected one top-level key '{key}' holding a list")
    return doc[key]


def resolve_numbers(ref, where: str, error: type[Exception] = ValueError):
    """``ref`` with every ``{text_number: KEY}`` replaced by ``text_numbers[KEY].value`` (``KEY.field.0``: another
    field) — how claims.yaml and figures.yaml cite the paper's numbers instead of copying them. An unknown key
    raises ``error`` naming ``where``."""
    if isinstance(ref, list):
        return [resolve_numbers(x, where, error) for x in ref]
    if not isinstance(ref, dict):
        return ref
    if set(ref) != {"text_number"}:
        return {k: resolve_numbers(v, where, error) for k, v in ref.items()}
    key, *path = str(ref["text_number"]).split(".")
    try:
        value = TEXT_NUMBERS[key]
        for step in path or ["value"]:
            value = value[int(step) if isinstance(value, list) else step]
    except (KeyError, IndexError, ValueError, TypeError):
        raise error(f"{where}: no paper number {ref['text_number']!r} in numbers.yaml") from None
    return value
