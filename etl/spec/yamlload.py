"""Safe YAML loading that remembers where every key came from, for errors that name the line.

Only `yaml.SafeLoader` is used (no Python objects), and anchors/aliases are refused: they are
never needed in a pipeline spec and they are how a tiny file expands into gigabytes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from etl.base.errors import SpecError, SpecErrors
from etl.base.filecheck import kind_of

Loc = tuple[str | int, ...]


# The plain YAML types; any other tag (!!python/..., !custom, !!binary) is refused with its line.
_TAGS = {
    f"tag:yaml.org,2002:{t}"
    for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")
}


def _walk(
    node: yaml.Node, loc: Loc, lines: dict[Loc, int], path: Path, problems: list[SpecError]
) -> Any:
    """The plain data of `node`; a problem in one value is noted in `problems` and the walk
    goes on (that value left out), so that every such problem is reported in one run."""
    if node.tag not in _TAGS:
        problems.append(SpecError(
            f"YAML tag {node.tag.removeprefix('tag:yaml.org,2002:')!r} is not supported "
            "(plain values, lists and mappings only)",
            path=path,
            line=node.start_mark.line + 1,
            key=".".join(map(str, loc)) or None,
        ))
        return None
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(SpecError(
                    "keys must be plain words", path=path, line=key_node.start_mark.line + 1
                ))
                continue
            key = key_node.value
            if key == "<<":
                problems.append(SpecError(
                    "merge keys (<<) are not supported",
                    path=path,
                    line=key_node.start_mark.line + 1,
                ))
                continue
            if key in out:
                problems.append(SpecError(
                    f"key {key!r} appears twice",
                    path=path,
                    line=key_node.start_mark.line + 1,
                    key=".".join(map(str, (*loc, key))),
                ))
                continue
            lines[(*loc, key)] = key_node.start_mark.line + 1
            out[key] = _walk(value_node, (*loc, key), lines, path, problems)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[(*loc, i)] = item.start_mark.line + 1
            items.append(_walk(item, (*loc, i), lines, path, problems))
        return items
    # A scalar: let the safe constructor type it (ints, floats, bools, null, strings).
    try:
        return yaml.SafeLoader.construct_object(_CONSTRUCTOR, node)
    except (yaml.YAMLError, ValueError) as exc:  # e.g. a timestamp that is no real date
        problems.append(SpecError(
            f"cannot read the value {node.value!r} ({str(exc).splitlines()[0]})",
            path=path,
            line=node.start_mark.line + 1,
            key=".".join(map(str, loc)) or None,
        ))
        return None


class _Constructor(yaml.SafeLoader):
    def __init__(self) -> None:  # no stream: used only to type scalars
        yaml.SafeLoader.__init__(self, "")


_CONSTRUCTOR = _Constructor()


MAX_SPEC_BYTES = 1 << 20  # a spec is a page of YAML; anything this big is the wrong file
MAX_DEPTH = 40  # real specs nest 5 levels; PyYAML's composer recurses once per level


def read_spec_text(path: Path) -> str:
    """The spec's text. Only a regular file is opened (a FIFO would block the open, /dev/zero
    would never end), and only up to MAX_SPEC_BYTES."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise SpecError("no such file", path=path) from None
    except OSError as exc:
        raise SpecError(f"cannot read the spec ({exc.strerror})", path=path) from None
    if not stat.S_ISREG(info.st_mode):
        raise SpecError(f"not a regular file ({kind_of(info.st_mode)})", path=path)
    if info.st_size > MAX_SPEC_BYTES:
        raise SpecError(f"the spec is {info.st_size:,} bytes: too large for a spec "
                        f"(at most {MAX_SPEC_BYTES:,})", path=path)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"cannot read the spec ({exc.strerror})", path=path) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(f"the spec is not UTF-8 text ({exc.reason})", path=path) from None


def load_yaml(
    path: Path, text: str | None = None, problems: list[SpecError] | None = None
) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML safely; return the data and a map from key path to 1-based line number.
    Problems in single values (a duplicate key, an unsupported tag) go to `problems` when it
    is given (the caller reports them with its own checks), else raise SpecErrors here."""
    if text is None:
        text = read_spec_text(path)
    try:
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise SpecError(
                    "anchors and aliases (&name / *name) are not supported",
                    path=path,
                    line=event.start_mark.line + 1 if event.start_mark else None,
                )
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise SpecError(
                        f"lists and mappings nested more than {MAX_DEPTH} levels deep",
                        path=path,
                        line=event.start_mark.line + 1 if event.start_mark else None,
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        if "\\t" in problem or "\t" in problem:
            problem += " (indent with spaces, not tabs)"
        raise SpecError(f"YAML syntax error: {problem}", path=path, line=line) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"YAML error: {exc}", path=path) from None
    if node is None:
        raise SpecError("the spec is empty", path=path)
    lines: dict[Loc, int] = {}
    found: list[SpecError] = []
    data = _walk(node, (), lines, path, found)
    if problems is None and found:
        raise SpecErrors(found)
    if problems is not None:
        problems += found
    return data, lines


def line_for(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The line of `loc`, or of its nearest ancestor that has one."""
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return None
