"""lightning_implicit.configfile: a YAML mapping into a dataclass, errors that name the file and the key."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from jsonargparse.typing import PositiveInt

from lightning_implicit.configfile import ConfigFileError, parse, read_yaml


@dataclass
class Inner:
    models: list[str] | None = None
    overrides: dict = field(default_factory=dict)


@dataclass
class Outer:
    workers: PositiveInt = 1
    tuned: bool = False
    tasks: dict[str, Inner] = field(default_factory=dict)
    nested: Inner = field(default_factory=Inner)


def test_a_mapping_becomes_the_dataclass_with_free_form_values_as_written():
    raw = {
        "workers": 3,
        "tasks": {"addition": {"models": ["mlp"], "overrides": {"a": "1", "b": "true", "c": None}}},
    }
    got = parse(Outer, raw, path="p.yaml")
    assert got == Outer(workers=3, tasks={"addition": Inner(["mlp"], {"a": "1", "b": "true", "c": None})})
    assert parse(Outer, {}, path="p.yaml") == Outer()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"workerz": 2}, "p.yaml: workerz: unknown key 'workerz'; did you mean 'workers'?"),
        (
            {"tasks": {"addition": {"modles": []}}},
            "p.yaml: tasks.addition.modles: unknown key 'modles'; did you mean 'models'?",
        ),
        (
            {"nested": {"overides": {}}},
            "p.yaml: nested.overides: unknown key 'overides'; did you mean 'overrides'?",
        ),
        ({"workers": 0}, "p.yaml: workers: "),
        ({"tuned": "maybe"}, "p.yaml: tuned: "),
        ({"tasks": {"addition": {"overrides": 3}}}, "p.yaml: tasks: "),
    ],
)
def test_errors_are_one_line_naming_file_key_and_fix(raw, message):
    with pytest.raises(ConfigFileError) as err:
        parse(Outer, raw, path="p.yaml", fix="see the docs")
    text = str(err.value)
    assert text.startswith(message) and text.endswith("; see the docs") and "\n" not in text


def test_read_yaml_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1\n")
    with pytest.raises(ConfigFileError, match="bad.yaml: cannot read it as YAML"):
        read_yaml(bad)
    bad.write_text("- 1\n")
    with pytest.raises(ConfigFileError, match="bad.yaml: expected a mapping"):
        read_yaml(bad)
    bad.write_text("")
    assert read_yaml(bad) == {}
