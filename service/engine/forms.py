"""Camunda form fields (camunda:formData) as a schema, and validation of submitted data against it."""
from __future__ import annotations

import datetime as _dt
import re
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
FIELD_TYPES = ("string", "long", "boolean", "date", "enum", "decimal", "documents")
IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
TODAY = "today"
# the texts a number or date field takes: ASCII digits (str.isdigit() and Decimal also take other scripts' digits)
_INTEGER = re.compile(r"-?[0-9]+")
DECIMAL_TEXT = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
MAX_DECIMAL_EXPONENT = 30  # amounts in 万元, percentages, scores: nothing near 10^30
RESERVED_NAMES = frozenset({"typename", "decision_options"})


@dataclass
class FormField:
    id: str
    label: str | None
    type: str
    required: bool = False
    readonly: bool = False
    default: Any = None
    options: list[dict[str, str]] = field(default_factory=list)
    min: Any = None
    max: Any = None
    minlength: int | None = None
    maxlength: int | None = None
    properties: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: decimals and dates as text, restored by from_dict."""
        d = asdict(self)
        for k in ("default", "min", "max"):
            if isinstance(d[k], (Decimal, _dt.date)):
                d[k] = str(d[k]) if isinstance(d[k], Decimal) else d[k].isoformat()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FormField:
        f = cls(**d)
        if f.type in ("decimal", "date"):
            for k in ("default", "min", "max"):
                v = getattr(f, k)
                if isinstance(v, str) and v != TODAY:
                    setattr(f, k, Decimal(v) if f.type == "decimal" else _dt.date.fromisoformat(v))
        return f


class FormDefinitionError(ValueError):
    """A form in a diagram that cannot work (bad type, bad constraint)."""


def parse_form(node: Any) -> list[FormField] | None:
    """Read camunda:formData/formField below an element; None when the element declares no form."""
    c = f"{{{CAMUNDA_NS}}}"
    form_data = node.findall(f".//{c}formData")
    if not form_data:
        return None
    fields: list[FormField] = []
    for xml_field in form_data[0].findall(f"{c}formField"):
        fid = xml_field.get("id") or ""
        ftype = xml_field.get("type") or "string"
        if ftype not in FIELD_TYPES:
            raise FormDefinitionError(f"form field '{fid}' has type '{ftype}'; allowed: {', '.join(FIELD_TYPES)}")
        f = FormField(id=fid, label=xml_field.get("label"), type=ftype)
        for child in xml_field:
            if child.tag == f"{c}value":
                f.options.append({"id": child.get("id") or "", "name": child.get("name") or child.get("id") or ""})
            elif child.tag == f"{c}properties":
                for p in child:
                    if p.get("id"):
                        f.properties[p.get("id")] = p.get("value") or ""
            elif child.tag == f"{c}validation":
                for constraint in child:
                    _apply_constraint(f, constraint.get("name") or "", constraint.get("config"))
        raw_default = xml_field.get("defaultValue")
        if raw_default not in (None, ""):
            try:
                f.default = coerce(f, raw_default, from_text=True)
            except ValueError as e:
                raise FormDefinitionError(f"form field '{fid}': default value {raw_default!r}: {e}") from e
        if not IDENTIFIER.match(fid) or fid in RESERVED_NAMES:
            raise FormDefinitionError(f"form field id '{fid}' must be a letter followed by letters, digits or _")
        if ftype == "enum" and not f.options:
            raise FormDefinitionError(f"enum form field '{fid}' has no values")
        fields.append(f)
    return fields


def _apply_constraint(f: FormField, name: str, config: str | None) -> None:
    try:
        if name == "required":
            f.required = True
        elif name == "readonly":
            f.readonly = True
        elif name in ("min", "max"):
            if config is None:
                raise FormDefinitionError(f"form field '{f.id}': constraint {name} needs a value")
            value = _parse_bound(f, config)
            setattr(f, name, value)
        elif name in ("minlength", "maxlength"):
            setattr(f, name, int(config or ""))
        else:
            raise FormDefinitionError(f"form field '{f.id}': unknown validation constraint '{name}'")
    except (ValueError, InvalidOperation) as e:
        if isinstance(e, FormDefinitionError):
            raise
        raise FormDefinitionError(f"form field '{f.id}': constraint {name}={config!r} is not valid") from e


def _parse_bound(f: FormField, config: str) -> Any:
    if f.type == "long":
        return int(config)
    if f.type == "decimal":
        return Decimal(config)
    if f.type == "date":
        # `today`: a reported date cannot lie in the future (the service's day, China time, when it is checked)
        return TODAY if config.strip() == TODAY else _dt.date.fromisoformat(config)
    raise FormDefinitionError(f"form field '{f.id}': min/max apply to long, decimal and date fields")


def _bounded(d: Decimal) -> Decimal:
    if not d.is_finite():
        raise ValueError("must be a finite number")
    if d and abs(d.adjusted()) > MAX_DECIMAL_EXPONENT:
        raise ValueError(f"must lie between 10^-{MAX_DECIMAL_EXPONENT} and 10^{MAX_DECIMAL_EXPONENT}")
    return d


def coerce(f: FormField, value: Any, from_text: bool = False) -> Any:
    """Turn a JSON value into the field's Python type, or raise ValueError with a reason."""
    t = f.type
    if t == "string":
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return value
    if t == "enum":
        if not isinstance(value, str):
            raise ValueError("must be a string")
        allowed = [o["id"] for o in f.options]
        if value not in allowed:
            raise ValueError(f"must be one of: {', '.join(allowed)}")
        return value
    if t == "boolean":
        if isinstance(value, bool):
            return value
        if from_text and value in ("true", "false"):
            return value == "true"
        raise ValueError("must be true or false")
    if t == "long":
        if isinstance(value, bool):
            raise ValueError("must be an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
            return int(value)
        raise ValueError("must be an integer")
    if t == "decimal":
        if isinstance(value, bool):
            raise ValueError("must be a number")
        if isinstance(value, (int, Decimal)):
            return _bounded(Decimal(value))
        if isinstance(value, float):
            # the shortest repr is what the client wrote: 49.99 stays exactly 49.99
            return _bounded(Decimal(repr(value)))
        if isinstance(value, str):
            if not DECIMAL_TEXT.fullmatch(value.strip()):  # ASCII digits, as written in JSON: not ５, 1_000 or NaN
                raise ValueError("must be a number")
            return _bounded(Decimal(value.strip()))
        raise ValueError("must be a number")
    if t == "documents":
        return _documents(value)
    if t == "date":
        if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
            return value
        if isinstance(value, str):
            try:
                if not _DATE.fullmatch(value):  # the declared format only: not 20260101 or the week date 2026-W09-1
                    raise ValueError
                return _dt.date.fromisoformat(value)
            except ValueError:
                raise ValueError("must be a date (YYYY-MM-DD)") from None
        raise ValueError("must be a date (YYYY-MM-DD)")
    raise ValueError(f"unsupported type {t}")


PAYLOAD_TYPES = ("string", "long", "boolean", "date", "decimal", "documents")


def parse_payload_field(variable: str, spec: str) -> FormField:
    """A message payload field declared as an extension property: `payload.<variable>` =
    `<type>[,required][,label=<text>]` (the type may also be `enum:a|b|c`)."""
    if not IDENTIFIER.match(variable) or variable in RESERVED_NAMES:
        raise FormDefinitionError(f"payload field '{variable}' must be a letter followed by letters, digits or _")
    parts = [p.strip() for p in spec.split(",")]
    kind, flags = parts[0], parts[1:]
    field_ = FormField(id=variable, label=None, type=kind)
    if kind.startswith("enum:"):
        options = [o.strip() for o in kind[5:].split("|") if o.strip()]
        if not options:
            raise FormDefinitionError(f"payload field '{variable}': enum needs values, e.g. enum:yes|no")
        field_.type = "enum"
        field_.options = [{"id": o, "name": o} for o in options]
    elif kind not in PAYLOAD_TYPES:
        raise FormDefinitionError(f"payload field '{variable}' has type '{kind}'; allowed: "
                                  f"{', '.join(PAYLOAD_TYPES)}, enum:a|b")
    for flag in flags:
        if flag == "required":
            field_.required = True
        elif flag.startswith("label="):
            field_.label = flag[len("label="):].strip() or None
        elif flag.startswith(("min=", "max=")):
            name, _, bound = flag.partition("=")
            try:
                setattr(field_, name, _parse_bound(field_, bound.strip()))
            except (ValueError, InvalidOperation) as e:
                raise FormDefinitionError(f"payload field '{variable}': {flag!r} is not a bound ({e})") from None
        elif flag:
            raise FormDefinitionError(f"payload field '{variable}': unknown flag '{flag}' "
                                      "(write type[,required][,min=…][,max=…|max=today][,label=…])")
    return field_


_URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$", re.I)
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
MAX_DOCUMENTS = 100


def _documents(value: Any) -> list[dict[str, str]]:
    """Document references: [{name, url, sha256?}], http(s) URLs, a hex SHA-256 where given."""
    if not isinstance(value, list):
        raise ValueError("must be a list of documents {name, url, sha256?}")
    if len(value) > MAX_DOCUMENTS:
        raise ValueError(f"at most {MAX_DOCUMENTS} documents")
    clean = []
    for i, doc in enumerate(value):
        if not isinstance(doc, dict):
            raise ValueError(f"document {i + 1} must be an object {{name, url, sha256?}}")
        unknown = set(doc) - {"name", "url", "sha256"}
        if unknown:
            raise ValueError(f"document {i + 1}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        name, url, digest = doc.get("name"), doc.get("url"), doc.get("sha256")
        if not isinstance(name, str) or not name.strip() or len(name) > 500:
            raise ValueError(f"document {i + 1}: name must be a text of 1 to 500 characters")
        if not isinstance(url, str) or len(url) > 2000 or not _URL.match(url):
            raise ValueError(f"document {i + 1}: url must be an http or https URL")
        item = {"name": name, "url": url}
        if digest is not None:
            if not isinstance(digest, str) or not _SHA256.match(digest):
                raise ValueError(f"document {i + 1}: sha256 must be 64 hexadecimal digits")
            item["sha256"] = digest.lower()
        clean.append(item)
    return clean


def validate(
    fields: list[FormField], submitted: dict[str, Any], *, apply_defaults: bool = True, today: _dt.date | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Check submitted data against a form. Returns (clean values, {field: problem})."""
    by_id = {f.id: f for f in fields}
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for name in submitted:
        if name not in by_id:
            errors[name] = "is not a field of this form"
    for f in fields:
        present = f.id in submitted and submitted[f.id] is not None and submitted[f.id] not in ("", [])
        if not present:
            if f.default is not None and apply_defaults:
                clean[f.id] = f.default
            elif f.required:
                errors[f.id] = "is required"
            continue
        if f.readonly:
            errors[f.id] = "is read-only"
            continue
        try:
            value = coerce(f, submitted[f.id])
        except ValueError as e:
            errors[f.id] = str(e)
            continue
        problem = _check_bounds(f, value, today)
        if problem:
            errors[f.id] = problem
            continue
        clean[f.id] = value
    return clean, errors


def _check_bounds(f: FormField, value: Any, today: _dt.date | None) -> str | None:
    low = today if f.min == TODAY else f.min
    high = today if f.max == TODAY else f.max
    if low is not None and value < low:
        return f"must be on or after {low} (today)" if f.min == TODAY else f"must be at least {low}"
    if high is not None and value > high:
        return f"must not be after today ({high})" if f.max == TODAY else f"must be at most {high}"
    if isinstance(value, str):
        if f.minlength is not None and len(value) < f.minlength:
            return f"must have at least {f.minlength} characters"
        if f.maxlength is not None and len(value) > f.maxlength:
            return f"must have at most {f.maxlength} characters"
    return None


def schema_for_api(fields: list[FormField]) -> list[dict[str, Any]]:
    """The form as clients see it: JSON-safe values."""
    out = []
    for f in fields:
        d = asdict(f)
        for k in ("default", "min", "max"):
            d[k] = to_json_value(d[k])
        out.append(d)
    return out


def to_json_value(v: Any) -> Any:
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() and abs(v) < 2**53 else float(v)
    if isinstance(v, (_dt.datetime, _dt.date)):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: to_json_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [to_json_value(x) for x in v]
    return v


def from_json_value(v: Any) -> Any:
    """Variables without a form: numbers with a fraction become exact decimals."""
    if isinstance(v, float):
        return Decimal(repr(v))
    if isinstance(v, dict):
        return {k: from_json_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [from_json_value(x) for x in v]
    return v
