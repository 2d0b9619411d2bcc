"""Read a manifest's YAML as kubectl sends it to the API server.

kubectl converts YAML to JSON with sigs.k8s.io/yaml, which resolves plain scalars by
go-yaml v2's rules (its resolve.go), not PyYAML's YAML 1.1 ones: `1e-6` is a number (PyYAML:
a string), `1:30` a string (PyYAML: 90), `y` and `n` booleans, `08` the float 8, dates stay
strings. Then the JSON the server decodes turns an integral float into an integer, map keys
into strings, and infinities and NaN cannot be sent at all. This loader does all of that, so
`seesaw validate` sees the document the server would.
"""
from __future__ import annotations

import decimal
import math
import re
from typing import Any, Iterator

import yaml

GO_INT_TAG = "tag:seesaw.dev,2026:go-number"  # a plain scalar go-yaml reads as a number if it parses
BOOLS = {**dict.fromkeys(["y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"], True),
         **dict.fromkeys(["n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"], False)}
NULLS = ["", "~", "null", "Null", "NULL"]
SPECIAL_FLOATS = {**dict.fromkeys([".nan", ".NaN", ".NAN"], math.nan),
                  **dict.fromkeys([".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"], math.inf),
                  **dict.fromkeys(["-.inf", "-.Inf", "-.INF"], -math.inf)}
YAML_STYLE_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
GO_INT = re.compile(r"^[-+]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)$")
TIMESTAMP_START = re.compile(r"^[0-9]{4}-")
INT64 = (-(2 ** 63), 2 ** 63 - 1)
UINT64_MAX = 2 ** 64 - 1
JSON_EXPONENT_FROM = 1e21  # Go's encoding/json writes floats this large with an exponent


class ManifestYAMLError(ValueError):
    """A document kubectl could not send; the message names the field."""


def _go_parse_int(text: str) -> int | None:
    """strconv.ParseInt(text, 0, 64), then ParseUint: None where Go fails."""
    if not GO_INT.match(text):
        return None
    sign = -1 if text[0] == "-" else 1
    body = text.lstrip("+-")
    if len(body) > 1 and body[0] == "0" and body[1] in "xXoObB":
        value = int(body, 0)
    elif len(body) > 1 and body[0] == "0":
        value = int(body, 8)  # a leading zero is octal to Go
    else:
        value = int(body)
    value *= sign
    if INT64[0] <= value <= INT64[1] or (0 <= value <= UINT64_MAX and text[0] not in "+-"):
        return value
    return None


def go_number(text: str) -> Any:
    """go-yaml v2's reading of a plain scalar that starts with a digit, a sign or a dot."""
    if text[0] == ".":
        if "_" not in text and YAML_STYLE_FLOAT.match(text):
            return float(text)
        return text
    if TIMESTAMP_START.match(text):
        return text  # a date or timestamp: decoded into a string for interface{} values
    plain = text.replace("_", "")
    integer = _go_parse_int(plain)
    if integer is not None:
        return integer
    if YAML_STYLE_FLOAT.match(plain):
        return float(plain)
    return text


class KubectlLoader(yaml.SafeLoader):
    """PyYAML's safe loader with go-yaml v2's implicit scalar rules; map keys become strings
    as they are read (so `y:` and `1:` stay two keys, "true" and "1", as in the JSON)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[str, Any]:
        self.flatten_mapping(node)
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            mapping[_key(self.construct_object(key_node, deep=True))] = self.construct_object(value_node, deep=deep)
        return mapping


KubectlLoader.yaml_implicit_resolvers = {}
KubectlLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile("^(?:" + "|".join(BOOLS) + ")$"), list("yYnNtTfFoO"))
KubectlLoader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
KubectlLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(
    "^(?:" + "|".join(re.escape(s) for s in SPECIAL_FLOATS) + ")$"), list(".+-"))
KubectlLoader.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])
KubectlLoader.add_implicit_resolver(GO_INT_TAG, re.compile(r"^[-+0-9.]"), list("-+0123456789."))
KubectlLoader.add_constructor("tag:yaml.org,2002:bool", lambda loader, node: BOOLS[loader.construct_scalar(node)])
KubectlLoader.add_constructor("tag:yaml.org,2002:float", lambda loader, node: _float(loader.construct_scalar(node)))
KubectlLoader.add_constructor(GO_INT_TAG, lambda loader, node: go_number(loader.construct_scalar(node)))
# explicit !!timestamp stays a string too, as it reaches an interface{}
KubectlLoader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))


def _float(text: str) -> float:
    if text in SPECIAL_FLOATS:
        return SPECIAL_FLOATS[text]
    number = go_number(text) if text[:1] in "-+0123456789." else text
    if isinstance(number, (int, float)):
        return float(number)
    raise ManifestYAMLError(f"cannot decode !!str `{text}` as a !!float")


def _key(key: Any) -> str:
    """sigs.k8s.io/yaml's map keys: every key becomes a string."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        raise ManifestYAMLError("a map key is null (kubectl's YAML to JSON conversion refuses it): quote it, or name the field")
    if isinstance(key, float):
        return _go_format_g(key)
    return str(key)


def _go_format_g(value: float) -> str:
    """strconv.FormatFloat(value, 'g', -1, 64): the shortest digits; an exponent below 1e-4 or from 1e6."""
    if math.isnan(value) or math.isinf(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    if value == 0:
        return "0"
    sign, digits, exponent = decimal.Decimal(repr(abs(value))).normalize().as_tuple()
    text = "".join(map(str, digits))
    exp = len(text) + exponent - 1  # the decimal exponent of the first digit
    prefix = "-" if value < 0 else ""
    if exp < -4 or exp >= 6:
        body = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{body}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    return prefix + format(decimal.Decimal(repr(abs(value))).normalize(), "f")


def _as_json(value: Any, path: str) -> Any:
    """What the server decodes from the JSON kubectl sends."""
    if isinstance(value, dict):
        return {_key(k): _as_json(v, f"{path}.{_key(k)}" if path else _key(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_json(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ManifestYAMLError(f"{path or '<document>'}: {value} cannot be sent to the API server "
                                    "(kubectl's YAML to JSON conversion has no infinity or NaN); write a number")
        if value.is_integer() and abs(value) < JSON_EXPONENT_FROM:
            return int(value)  # written without a fraction: an integer to the server
    return value


def load_all(text: str) -> Iterator[Any]:
    """Every document of a YAML (or JSON) text, as the server receives it from kubectl."""
    for document in yaml.load_all(text, Loader=KubectlLoader):
        yield _as_json(document, "")


def load(text: str) -> Any:
    documents = [d for d in load_all(text) if d is not None]
    if len(documents) > 1:
        raise ManifestYAMLError(f"expected one YAML document, found {len(documents)}")
    return documents[0] if documents else None
