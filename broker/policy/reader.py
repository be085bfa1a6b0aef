"""Reading the policy file: YAML to plain data, remembering the line of every path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class PolicyError:
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path}: {self.message}" if self.path else f"{where}{self.message}"


class PolicyInvalid(Exception):
    def __init__(self, errors: list[PolicyError]):
        super().__init__(f"{len(errors)} error(s) in the policy file")
        self.errors = errors


# A policy file is a few levels deep (roles[0].approval.stages[0].approvers.users[0] is seven); the
# composer recurses per level, so a bound keeps a hostile file from ending in RecursionError.
MAX_DEPTH = 50


class _Loader(yaml.SafeLoader):
    """A SafeLoader whose composer refuses aliases and bounds nesting, before anything is constructed.

    An alias makes two places in the file one object: `a: &a [*a]` is a cycle (converting it never
    ends) and a few anchors of aliases of aliases make a billion leaves from a kilobyte (the
    "billion laughs"). A policy file has no use for them: every alias is noted with its line and
    composed as a null, so that one read reports them all and the tree stays finite.
    """

    def __init__(self, text: str):
        super().__init__(text)
        self.aliases: list[PolicyError] = []
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            event = self.get_event()
            self.aliases.append(PolicyError("", event.start_mark.line + 1, self._refusal(event.anchor)))
            return yaml.ScalarNode("tag:yaml.org,2002:null", "", event.start_mark, event.end_mark)
        if self.depth >= MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def _refusal(self, name: str) -> str:
        anchored = self.anchors.get(name)
        where = f"anchored on line {anchored.start_mark.line + 1}" if anchored else "which no anchor defines"
        return f"YAML aliases are not allowed (*{name}, {where}); write the value out in full"


class Reader:
    """Turns a YAML node tree into plain data, remembering the line of every path."""

    def __init__(self, text: str):
        self.text = text
        self.loader: _Loader | None = None
        self.lines: dict[Path, int] = {}
        self.errors: list[PolicyError] = []

    def read(self) -> Any:
        try:
            # Made here, not in __init__: the loader refuses a text with a control character (or a
            # lone surrogate, which JSON can carry) as soon as it is given one.
            self.loader = _Loader(self.text)
            node = self.loader.get_single_node()
        except yaml.reader.ReaderError as exc:
            line = self.text.count("\n", 0, exc.position) + 1
            self.errors.append(PolicyError("", line, f"not valid YAML: character {exc.character:#06x} is not allowed"))
            return None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or str(exc)
            self.errors.append(PolicyError("", mark.line + 1 if mark else None, f"not valid YAML: {problem}"))
            return None
        finally:
            if self.loader is not None:
                self.loader.dispose()
        if self.loader.aliases:
            self.errors += list(dict.fromkeys(self.loader.aliases))  # once per line and anchor
            return None
        if node is None:
            return None
        return self._convert(node, ())

    def _convert(self, node: yaml.Node, path: Path) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self._scalar(key_node)
                if not isinstance(key, str):
                    self.errors.append(
                        PolicyError(dotted(path), key_node.start_mark.line + 1, f"key {key!r} must be text")
                    )
                    continue
                if key in result:
                    self.errors.append(
                        PolicyError(dotted(path + (key,)), key_node.start_mark.line + 1, "duplicate key")
                    )
                    continue
                result[key] = self._convert(value_node, path + (key,))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self._convert(item, path + (i,)) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def located(self, path: Path, message: str) -> PolicyError:
        """An error at `path`, on the line of the nearest part of it that is in the file."""
        line = None
        probe = path
        while probe and line is None:
            line = self.lines.get(probe)
            probe = probe[:-1]
        return PolicyError(dotted(path), line or self.lines.get(()), message)

    def _scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            return None
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.errors.append(PolicyError("", node.start_mark.line + 1, f"bad value: {exc}"))
            return None


def dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out
