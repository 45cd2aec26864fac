"""Stack files parsed safely: every problem at once, with file and key path, in well under a second for any input.

The document is composed into PyYAML's node graph (SafeLoader), checked in one walk before anything is
constructed, then constructed by the same loader, so a valid file gives exactly what `yaml.safe_load` gives.
Refused: files over MAX_BYTES, more than one document, nesting deeper than MAX_DEPTH, more than MAX_NODES values
(aliases counted expanded, without expanding them: one size per node, memoised by node id), recursive aliases,
duplicate keys, keys that are not strings, merge keys (`<<`), and tags other than the plain core ones.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .stackfile import Problem, StackError

# The bounds keep the parse well under a second whatever the input: PyYAML's pure-Python SafeLoader reads
# about 1 MB/s of blank lines or long scalars and composes about 30 000 nodes/s. A stack file is a few
# kilobytes (the example stacks 4 KB, `socle new` 8 KB) with a few hundred values (under 300).
MAX_BYTES = 256 * 1024
MAX_NODES = 10_000  # values in the document, aliases expanded
MAX_DEPTH = 64  # nesting of mappings and lists
MAX_PROBLEMS = 100

_CORE = "tag:yaml.org,2002:"
STR, MAP, SEQ = _CORE + "str", _CORE + "map", _CORE + "seq"
MERGE, VALUE = _CORE + "merge", _CORE + "value"
# Scalar tags that construct to something other than a string: checked by constructing them during the walk.
_TYPED = {_CORE + t: "construct_yaml_" + t for t in ("int", "float", "bool", "null", "timestamp")}
_TAGS = {ScalarNode: {STR, *_TYPED}, MappingNode: {MAP}, SequenceNode: {SEQ}}
_KIND = {ScalarNode: "a scalar", MappingNode: "a mapping", SequenceNode: "a list"}
_TYPE_NAME = {"int": "a number", "float": "a number", "bool": "a boolean", "null": "null", "timestamp": "a date"}


def _short(tag: str) -> str:
    return "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "-"


def _clip(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


class _Refused(Exception):
    """A limit reached while composing: the parse stops there."""

    def __init__(self, mark: Any, message: str):
        super().__init__(message)
        self.mark, self.message = mark, message


class _Loader(yaml.SafeLoader):
    """SafeLoader whose composer counts nodes and nesting as it goes and remembers anchor names."""

    def __init__(self, text: str):
        super().__init__(text)
        self.nodes = 0
        self.depth = 0
        self.anchor_names: dict[int, str] = {}

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        self.nodes += 1  # an alias stands for at least one value
        if self.nodes > MAX_NODES:
            raise _Refused(event.start_mark, f"more than {MAX_NODES} values in the file; a stack file has a few hundred")
        if isinstance(event, AliasEvent):
            return super().compose_node(parent, index)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Refused(event.start_mark, f"nested more than {MAX_DEPTH} levels deep")
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        if event.anchor is not None:
            self.anchor_names[id(node)] = event.anchor
        return node


class _Walk:
    """One pass over the node graph in document order. The first visit of a node is its definition; a later
    visit of the same node object is an alias, counted with the memoised size of its target."""

    def __init__(self, loader: _Loader, file: str):
        self.loader, self.file = loader, file
        self.problems: list[Problem] = []
        self.size: dict[int, int] = {}  # node id -> nodes it stands for, capped at MAX_NODES + 1
        self.open: set[int] = set()  # nodes being walked: an alias to one of them is recursive
        self.total = 0  # nodes of the document so far, aliases expanded
        self.too_big = False

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(self.file, path or "-", message))

    def count(self, n: int, path: str, alias: str | None) -> None:
        self.total += n
        if self.total > MAX_NODES and not self.too_big:
            self.too_big = True
            here = f" (*{alias} here stands for {self.fmt(n)} values)" if alias else ""
            self.add(path, f"aliases expand the document to more than {MAX_NODES} values{here}; "
                           "a stack file uses aliases only for small repetitions")

    @staticmethod
    def fmt(n: int) -> str:
        return f"more than {MAX_NODES}" if n > MAX_NODES else str(n)

    def name(self, node: Node) -> str:
        return self.loader.anchor_names.get(id(node), "?")

    def node(self, node: Node, path: str, key: bool = False) -> int:
        nid = id(node)
        if nid in self.size:
            self.count(self.size[nid], path, self.name(node))
            return self.size[nid]
        if nid in self.open:
            self.add(path, f"alias *{self.name(node)} refers to a node that contains it (recursive alias)")
            return 1
        self.count(1, path, None)
        self.open.add(nid)
        size = 1 + self.check_tag(node, path, key)
        self.open.discard(nid)
        self.size[nid] = min(size, MAX_NODES + 1)
        return self.size[nid]

    def check_tag(self, node: Node, path: str, key: bool) -> int:
        """Check the node's tag and value, walk its children; returns the size of the children."""
        tag = node.tag
        if tag == MERGE:
            self.add(path, "merge keys (<<) are not supported; write the keys out" if key
                     else "a bare '<<' is not a value; quote it")
            return 0
        if tag == VALUE and isinstance(node, ScalarNode):
            if not key:  # as a key, SafeLoader reads a bare '=' as the string '='
                self.add(path, "a bare '=' is not a value; quote it")
            return 0
        if tag not in _TAGS[type(node)]:
            if any(tag in tags for tags in _TAGS.values()):
                self.add(path, f"tag {_short(tag)} cannot be used on {_KIND[type(node)]}")
            else:
                self.add(path, f"tag {_short(tag)} is not allowed; a stack file holds plain strings, numbers, "
                               "booleans, null, dates, mappings and lists")
            return 0
        if isinstance(node, MappingNode):
            return self.mapping(node, path)
        if isinstance(node, SequenceNode):
            return sum(self.node(item, f"{path}[{i}]") for i, item in enumerate(node.value))
        if tag in _TYPED:
            try:
                getattr(self.loader, _TYPED[tag])(node)
            except (ValueError, KeyError, AttributeError, TypeError, OverflowError, yaml.YAMLError) as exc:
                kind = _TYPE_NAME[tag[len(_CORE):]]
                detail = f" ({exc})" if isinstance(exc, ValueError) and str(exc) else ""
                self.add(path, f"{_clip(node.value)!r} is not {kind}{detail}")
        return 0

    def mapping(self, node: MappingNode, path: str) -> int:
        size = 0
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            text = key_node.value if isinstance(key_node, ScalarNode) else None
            if key_node.tag == MERGE:
                here = f"{path}.<<" if path else "<<"
            elif isinstance(key_node, ScalarNode) and key_node.tag in (STR, VALUE):
                here = f"{path}.{text}" if path else text
                if text in seen:
                    self.add(here, f"duplicate key {_clip(text)!r} at line {line} (first at line {seen[text]})")
                else:
                    seen[text] = line
            else:
                shown = _clip(text) if isinstance(text, str) else f"<{_KIND[type(key_node)][2:]}>"
                here = f"{path}.{shown}" if path else shown
                if isinstance(key_node, ScalarNode) and key_node.tag in _TYPED:
                    got = f"{shown!r} at line {line} is read as {_TYPE_NAME[key_node.tag[len(_CORE):]]}; quote it"
                else:
                    got = f"{_KIND[type(key_node)]} at line {line}"
                self.add(here, f"keys must be strings ({got})")
            size += self.node(key_node, here, key=True) + self.node(value_node, here)
        return size


def _too_large(file: str, size: str) -> StackError:
    return StackError([Problem(file, "-", f"file too large ({size} bytes; a stack file is at most {MAX_BYTES // 1024} KiB)")])


def load_stack_yaml(text: str, file: str) -> Any:
    """The document in TEXT, as yaml.safe_load gives it; StackError with every problem when it is not acceptable."""
    if len(text) > MAX_BYTES:
        raise _too_large(file, f"more than {MAX_BYTES}")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise _too_large(file, str(size))
    loader = None
    try:
        try:
            loader = _Loader(text)  # the reader checks for non-printable characters here
            node = loader.get_single_node()
        except _Refused as exc:
            raise StackError([Problem(file, _where(exc.mark), exc.message)]) from None
        except yaml.reader.ReaderError as exc:
            line = text.count("\n", 0, exc.position) + 1
            column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
            char = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
            raise StackError([Problem(file, f"line {line}, column {column}",
                                      f"not valid YAML: {exc.reason} (character {char})")]) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
            if problem.startswith("but found another document"):
                message = "a stack file holds one YAML document; another one starts here"
            else:
                context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
                more = f" ({context} at line {cmark.line + 1})" if context and cmark is not None else ""
                message = f"not valid YAML: {problem}{more}"
            raise StackError([Problem(file, _where(mark), message)]) from None
        except RecursionError:  # not expected below MAX_DEPTH; never a traceback
            raise StackError([Problem(file, "-", "nested too deeply")]) from None
        if node is None:
            return None
        walk = _Walk(loader, file)
        walk.node(node, "")
        if walk.problems:
            problems = walk.problems[:MAX_PROBLEMS]
            if len(walk.problems) > MAX_PROBLEMS:
                problems.append(Problem(file, "-", f"{len(walk.problems) - MAX_PROBLEMS} more problems not shown"))
            raise StackError(problems)
        try:
            return loader.construct_document(node)
        except (yaml.YAMLError, ValueError, KeyError, AttributeError, TypeError, OverflowError, RecursionError) as exc:
            raise StackError([Problem(file, _where(getattr(exc, "problem_mark", None)),
                                      f"not valid YAML: {getattr(exc, 'problem', None) or exc}")]) from None
    finally:
        if loader is not None:
            loader.dispose()


def load_stack_file(path: Path, file: str) -> Any:
    """The stack file at PATH (shown as FILE in problems), read as Python reads text files, checked as above."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
            if len(data) > MAX_BYTES:
                raise _too_large(file, str(path.stat().st_size))
    except OSError as exc:
        raise StackError([Problem(file, "-", f"cannot read the file: {exc.strerror or exc}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise StackError([Problem(file, "-", "not UTF-8 text")]) from None
    return load_stack_yaml(text.replace("\r\n", "\n").replace("\r", "\n"), file)
