"""Reading a user's YAML (a config file, a `--set` value) strictly: safe types only, unique string keys, and bounds
on nesting, alias expansion and integer width, so that hostile or careless input is one bounded error line."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml

from mbpo_cli.config.errors import shown

MAX_YAML_DEPTH = 64
"""Deepest nesting of collections a user's YAML may have (a config nests three or four levels)."""
MAX_YAML_NODES = 100_000
"""Most values a user's YAML may hold once its aliases are expanded (a config holds about 150): a few hundred
bytes of nested aliases (a "billion laughs") would otherwise expand to gigabytes wherever the config is copied,
stored or shown."""
MAX_YAML_INT_BITS = 1024
"""Widest integer a user's YAML may hold (about 308 digits, the range of a float)."""


class YamlRefused(yaml.MarkedYAMLError):
    """YAML that parses but is refused as a config: a duplicate or non-string key, nesting or aliases beyond the
    bounds, an integer too wide. `problem` says what, `problem_mark` where."""


_SAFE_INT = yaml.SafeLoader.yaml_constructors["tag:yaml.org,2002:int"]
"""PyYAML's own integer constructor, which :meth:`ConfigLoader.construct_bounded_int` bounds."""


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the checks a user's config needs.

    Refuses a mapping key given twice (YAML says keys are unique; PyYAML would keep the last silently, so a second
    `train:` section would replace the first), a key that is not a string, nesting deeper than
    :data:`MAX_YAML_DEPTH`, a document whose aliases expand it beyond :data:`MAX_YAML_NODES` values or into itself,
    and integers wider than :data:`MAX_YAML_INT_BITS`. Merge keys (`<<: *defaults`) stay allowed.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}
        """Values under each composed node, aliases expanded, by the node's id."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        """A node as PyYAML composes it, counted: its depth and its size with every alias expanded bounded."""
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            node = super().compose_node(parent, index)
            if id(node) not in self._sizes:
                raise YamlRefused(problem="an alias inside the collection it names (a recursive alias)",
                                  problem_mark=mark)
            return node
        mark = self.peek_event().start_mark
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise YamlRefused(problem=f"nested more than {MAX_YAML_DEPTH} levels deep", problem_mark=mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, yaml.MappingNode):
            children: list[yaml.Node] = [n for pair in node.value for n in pair]
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else []
        size = 1 + sum(self._sizes[id(child)] for child in children)
        if size > MAX_YAML_NODES:
            raise YamlRefused(problem=f"more than {MAX_YAML_NODES:,} values once its aliases are expanded",
                              problem_mark=mark)
        self._sizes[id(node)] = size
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        """The mapping of `node`, refused when a key is not a string or is given twice (merge keys aside)."""
        first_line: dict[str, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise YamlRefused(problem=f"key {shown(key)} is not a string (quote it)",
                                  problem_mark=key_node.start_mark)
            if key in first_line:
                raise YamlRefused(problem=f"duplicate key {shown(key)} (first at line {first_line[key]})",
                                  problem_mark=key_node.start_mark)
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)

    def construct_bounded_int(self, node: yaml.ScalarNode) -> int:
        """An integer scalar, refused beyond :data:`MAX_YAML_INT_BITS` (or Python's digit limit)."""
        try:
            value: int | None = _SAFE_INT(self, node)
        except ValueError:  # more digits than Python converts
            value = None
        if value is None or value.bit_length() > MAX_YAML_INT_BITS:
            raise YamlRefused(problem=f"integer too large (more than {MAX_YAML_INT_BITS} bits)",
                              problem_mark=node.start_mark)
        return value


ConfigLoader.add_constructor("tag:yaml.org,2002:int", ConfigLoader.construct_bounded_int)


def load_user_yaml(text: str) -> Any:
    """The value of a user's YAML text (a config file, a `--set` value) as :class:`ConfigLoader` reads it:
    safe types only; yaml.YAMLError (:class:`YamlRefused` for what it refuses) when it cannot be used."""
    loader = ConfigLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
