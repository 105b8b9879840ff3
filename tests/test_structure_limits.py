"""relay.verify.structure: depth and expansion limits on parsed documents, and the strict
YAML loader shared by relay.yaml, descriptors and anchors files."""

from __future__ import annotations

import pytest
import yaml

from relay.verify.structure import load_yaml, structure_problem


def test_depth_limit_counts_levels() -> None:
    assert structure_problem({"a": [[1]]}, max_depth=3) is None
    assert structure_problem({"a": [[[1]]]}, max_depth=3) == "nested deeper than 3 levels"
    assert structure_problem(1, max_depth=0) is None


def test_values_are_counted_as_a_walk_sees_them() -> None:
    shared = list(range(10))
    doc = {"a": shared, "b": shared}  # what PyYAML builds for an anchor used twice
    assert structure_problem(doc, max_depth=5, max_values=23) is None  # 1 + 2 + 2 x 10
    problem = structure_problem(doc, max_depth=5, max_values=22)
    assert problem is not None and problem.startswith("expands to more than 22 values")


def test_alias_bomb_is_stopped_at_the_budget() -> None:
    text = "l0: &l0 [" + ",".join(["x"] * 10) + "]\n"
    for i in range(1, 12):  # 10**11 values as a walk sees them
        text += f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 10) + "]\n"
    value = load_yaml(text, aliases=True, string_keys=False, what="test files")
    problem = structure_problem(value, max_depth=64, max_values=100_000)
    assert problem is not None and "expands" in problem


def test_loader_rules() -> None:
    assert load_yaml("a: &x 1\nb: *x\n", aliases=True, string_keys=False, what="t") == {
        "a": 1,
        "b": 1,
    }
    with pytest.raises(yaml.MarkedYAMLError, match="aliases are not allowed in anchors files"):
        load_yaml("a: &x 1\nb: *x\n", aliases=False, string_keys=True, what="anchors files")
    with pytest.raises(yaml.MarkedYAMLError, match="duplicate key 'a'"):
        load_yaml("a: 1\na: 2\n", aliases=True, string_keys=False, what="t")
    assert load_yaml("110105: x\n", aliases=True, string_keys=False, what="t") == {110105: "x"}
    with pytest.raises(yaml.MarkedYAMLError, match="keys must be strings"):
        load_yaml("110105: x\n", aliases=False, string_keys=True, what="t")
    with pytest.raises(yaml.MarkedYAMLError, match="keys must be scalars"):
        load_yaml("? [a]\n: x\n", aliases=True, string_keys=False, what="t")
    with pytest.raises(yaml.YAMLError):  # safe: no Python objects
        load_yaml("!!python/object:os.system x\n", aliases=True, string_keys=False, what="t")
