"""Structure limits for parsed YAML and JSON documents, and the one strict YAML loader every
file the relay reads goes through (relay.yaml, chain descriptors, anchors files).

Size limits on the bytes are each caller's; what a size limit cannot bound is checked here:

* depth: a document nested deeper than its limit is refused before anything walks it
  recursively (protobuf's JSON parser, pydantic);
* expansion: a YAML alias (``*name``) stands for the whole node its anchor (``&name``)
  names. PyYAML builds that node once and shares it, so loading stays linear, but every
  consumer that walks the result (validation, conversion to protobuf) visits it once per
  alias. Ten lines of nested aliases stand for 10^9 values ("billion laughs"), and a walk
  over them never ends. :func:`structure_problem` counts values as a walk would see them
  and stops at the budget.

The loader refuses duplicate keys (PyYAML keeps the last one silently, so a second ``tls:``
block would override the first unnoticed) and non-scalar keys; files that do not need
aliases (anchors files) refuse them outright.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml

__all__ = ["load_yaml", "structure_problem"]


def structure_problem(
    value: object, *, max_depth: int, max_values: int | None = None
) -> str | None:
    """None when ``value`` (dicts, lists and scalars, as parsed) nests at most ``max_depth``
    levels and, with ``max_values``, holds at most that many values counted as a walk sees
    them (a node shared through YAML aliases counts each time it is reached); else what it
    exceeds. Iterative, and it stops at the first limit crossed, so it is bounded by
    ``max_values`` (or by the document's size when nothing is shared)."""
    stack: list[tuple[object, int]] = [(value, 0)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return f"nested deeper than {max_depth} levels"
        seen += 1
        if max_values is not None and seen > max_values:
            return (
                f"expands to more than {max_values} values (YAML aliases repeat the node they "
                "name each time they are used)"
            )
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return None


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML, duplicate keys refused, keys scalars (strings only with ``_string_keys``),
    aliases refused unless ``_aliases``."""

    _aliases = True
    _string_keys = False
    _what = "this file"

    def compose_node(self, parent: Any, index: Any) -> Any:
        if not self._aliases and self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, f"aliases are not allowed in {self._what}", event.start_mark
            )
        return super().compose_node(parent, index)


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node)
        if loader._string_keys and not isinstance(key, str):
            raise yaml.constructor.ConstructorError(
                None, None, "mapping keys must be strings", key_node.start_mark
            )
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "mapping keys must be scalars", key_node.start_mark
            )
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@cache
def _loader(aliases: bool, string_keys: bool, what: str) -> type[_StrictLoader]:
    return type(
        "StrictLoader",
        (_StrictLoader,),
        {"_aliases": aliases, "_string_keys": string_keys, "_what": what},
    )


def load_yaml(text: str, *, aliases: bool, string_keys: bool, what: str) -> object:
    """One YAML document through the strict loader. ``what`` names the kind of file in the
    alias refusal ("anchors files"). Raises what PyYAML raises (``yaml.MarkedYAMLError``
    with the line and column), ``ValueError`` for a value Python cannot convert (an integer
    of more than 4,300 digits) and ``RecursionError``; callers turn them into their own
    errors. Check the result with :func:`structure_problem` before walking it."""
    return yaml.load(text, Loader=_loader(aliases, string_keys, what))
