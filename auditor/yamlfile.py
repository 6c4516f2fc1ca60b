"""Load YAML into pydantic models with errors that name the file, the field and the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from auditor.errors import InputFileError

Model = TypeVar("Model", bound=BaseModel)


def read_yaml(path: Path, error: type[InputFileError]) -> tuple[Any, yaml.Node | None]:
    """Parse a YAML file, returning the data and its node tree (for line numbers)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(str(path), "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(str(path), f"cannot read: {exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise error(str(path), f"invalid YAML: {exc.problem}", line=line) from None
    except yaml.YAMLError as exc:
        raise error(str(path), f"invalid YAML: {exc}") from None
    except RecursionError:
        raise error(str(path), "invalid YAML: nested too deeply") from None
    except (ValueError, OverflowError) as exc:  # a scalar's value: a 5000-digit int, a date
        raise error(str(path), f"invalid YAML: {exc}") from None
    return data, node


def line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """Line (1-based) of the YAML node at a pydantic error location, or the nearest parent."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
            if match is None:
                key_node = next(
                    (k for k, _ in node.value if getattr(k, "value", None) == key), None
                )
                return key_node.start_mark.line + 1 if key_node is not None else line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
        line = node.start_mark.line + 1
    return line


def field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def validate(
    model: type[Model],
    data: Any,
    path: Path,
    node: yaml.Node | None,
    error: type[InputFileError],
    context: dict[str, Any] | None = None,
) -> Model:
    """Validate data against a model; the first error becomes one InputFileError line."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(
            p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-"))
        )
        # Discriminated unions add the tag value to the location; drop such non-field parts.
        loc = _strip_union_tags(loc, node)
        msg = first["msg"]
        if first["type"] == "extra_forbidden":
            msg = "unknown key"
        elif first["type"] == "missing":
            msg = "required key is missing"
        raise error(str(path), msg, field=field_path(loc), line=line_of(node, loc)) from None


def _strip_union_tags(loc: tuple[int | str, ...], node: yaml.Node | None) -> tuple[int | str, ...]:
    """Drop the tag that pydantic inserts for a union member (e.g. `llama_cpp`): a name that is
    not a key of the mapping it would index, and is followed by more path."""
    kept: list[int | str] = []
    current = node
    for i, part in enumerate(loc):
        if isinstance(current, yaml.MappingNode):
            keys = {getattr(k, "value", None): v for k, v in current.value}
            if isinstance(part, str) and part not in keys and i < len(loc) - 1:
                continue
            current = keys.get(part)
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int):
            current = current.value[part] if part < len(current.value) else None
        else:
            current = None
        kept.append(part)
    return tuple(kept)
