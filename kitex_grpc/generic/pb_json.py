"""JSON <-> protobuf messages with Kitex's ``JSONPbGeneric`` rules (sans-IO, on ``json_format``).

Kitex converts with dynamicgo, not protojson (KITEX-WIRE-2.md §13.5). Where the two agree we use
``google.protobuf.json_format``; where they differ we follow Kitex:

* output keys are the fields' JSON names (lowerCamelCase unless ``json_name`` is set);
* ``int64``/``sint64``/``sfixed64`` (and the unsigned 64-bit types) are JSON **numbers**, not strings
  (``int64_as_string=True`` gives protojson's strings, for JavaScript readers);
* enums are written as numbers (a name or a number is accepted on input);
* bytes are standard base64; only fields present on the wire are written (no proto3 defaults).

Where Kitex loses information we do not: ``uint64``/``fixed64`` above 2^63 stay positive (dynamicgo
reads them as int64), and integers are exact at any size. On input we are stricter: an unknown key is
refused with its path (Kitex skips it; ``allow_unknown_fields=True`` does the same), and a wrong type or
an out-of-range number is refused. Input accepts both JSON names and the proto field names, and 64-bit
integers as numbers or decimal strings. Well-known types (Timestamp, Duration, Any, wrappers) take
protojson's forms, where Kitex treats them as plain messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from kitex_grpc.generic.errors import ConvertError, join

__all__ = ["PbConvOptions", "message_from_json", "message_to_json"]

_INT64_TYPES: Final = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_FIXED64,
    }
)
_WELL_KNOWN_PREFIX: Final = "google.protobuf."
_FAILED: Final = re.compile(r"Failed to parse (\S+) field: ")
_AT: Final = re.compile(r' at "?[\w.\[\]]+"?\.?$')


@dataclass(frozen=True, slots=True)
class PbConvOptions:
    """How protobuf messages are converted; the defaults are Kitex's."""

    int64_as_string: bool = False
    enums_as_names: bool = False
    allow_unknown_fields: bool = False


PB_OPTIONS: Final = PbConvOptions()


def message_from_json(message_type: type[Message], value: Any, opts: PbConvOptions = PB_OPTIONS) -> Message:
    """A new ``message_type`` from a parsed JSON object; :class:`ConvertError` names a bad field."""
    if not isinstance(value, dict):
        raise ConvertError("", f"expected an object for {message_type.DESCRIPTOR.full_name}")
    if not opts.allow_unknown_fields:
        _check_known(message_type.DESCRIPTOR, value, "")
    message = message_type()
    try:
        json_format.ParseDict(value, message, ignore_unknown_fields=opts.allow_unknown_fields)
    except json_format.ParseError as exc:
        raise _parse_error(str(exc)) from None
    return message


def _check_known(descriptor: Any, value: dict[str, Any], path: str) -> None:
    if descriptor.full_name.startswith(_WELL_KNOWN_PREFIX):
        return  # protojson's own forms (a Timestamp is a string, a Struct any object)
    fields: dict[str, Any] = {}
    for field in descriptor.fields:
        fields[field.json_name] = field
        fields[field.name] = field
    for key, item in value.items():
        field = fields.get(key)
        where = join(path, key)
        if field is None:
            raise ConvertError(where, f"unknown field of {descriptor.full_name}")
        sub = field.message_type
        if sub is None or item is None:
            continue
        if sub.GetOptions().map_entry:
            value_field = sub.fields_by_name["value"]
            if value_field.message_type is not None and isinstance(item, dict):
                for k, v in item.items():
                    if isinstance(v, dict):
                        _check_known(value_field.message_type, v, f"{where}[{k!r}]")
        elif _repeated(field) and isinstance(item, list):
            for i, element in enumerate(item):
                if isinstance(element, dict):
                    _check_known(sub, element, f"{where}[{i}]")
        elif isinstance(item, dict):
            _check_known(sub, item, where)


def _repeated(field: Any) -> bool:
    # protobuf >= 6 has is_repeated (and 7 dropped label); 4.x and 5.x have label only
    flag = getattr(field, "is_repeated", None)
    if flag is not None:
        return bool(flag)
    return bool(field.label == FieldDescriptor.LABEL_REPEATED)


def _parse_error(text: str) -> ConvertError:
    # json_format nests its errors as "Failed to parse <field> field: " prefixes, one per level, and
    # newer releases append ' at "<Message>.<path>"' (or " at <Message>.<path>.").
    names = []
    while True:
        match = _FAILED.match(text)
        if match is None:
            break
        names.append(match.group(1))
        text = text[match.end() :]
    text = _AT.sub("", text).rstrip(".")
    return ConvertError(".".join(names), text)


def message_to_json(message: Message, opts: PbConvOptions = PB_OPTIONS) -> dict[str, Any]:
    """``message`` as a JSON object with Kitex's rules (64-bit integers as numbers by default)."""
    out: dict[str, Any] = json_format.MessageToDict(
        message,
        preserving_proto_field_name=False,
        use_integers_for_enums=not opts.enums_as_names,
    )
    if not opts.int64_as_string:
        _int64_numbers(message.DESCRIPTOR, out)
    return out


def _int64_numbers(descriptor: Any, value: dict[str, Any]) -> None:
    """Turn protojson's 64-bit decimal strings back into numbers, in place."""
    if descriptor.full_name.startswith(_WELL_KNOWN_PREFIX):
        return
    for field in descriptor.fields:
        if field.json_name not in value:
            continue
        item = value[field.json_name]
        sub = field.message_type
        if sub is not None and sub.GetOptions().map_entry:
            value_field = sub.fields_by_name["value"]
            for k, v in item.items():
                item[k] = _one(value_field, v)
        elif _repeated(field):
            value[field.json_name] = [_one(field, v) for v in item]
        else:
            value[field.json_name] = _one(field, item)


def _one(field: FieldDescriptor, item: Any) -> Any:
    if field.type in _INT64_TYPES and isinstance(item, str):
        return int(item)
    if field.message_type is not None and isinstance(item, dict):
        _int64_numbers(field.message_type, item)
    return item
