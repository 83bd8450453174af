"""The pipeline spec: YAML -> validated, frozen pydantic objects. `load_spec(path)` is the entry.

A bad spec never reaches the data: every problem is reported with the YAML file, line, key path
and what would be valid, e.g.
`pipelines/gifts.yaml:14: mappings.amount.transforms[0]: unknown transform 'parse_amout'
(did you mean 'parse_amount'?)`.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel, ValidationError

from etl import transforms
from etl.base.errors import SpecError, SpecErrors
from etl.spec.model import (
    Case,
    Designation,
    FieldRules,
    KeyId,
    Keys,
    Load,
    LoadedSpec,
    Mapping,
    Match,
    Output,
    Source,
    Spec,
    template_columns,
)
from etl.spec.yamlload import Loc, line_for, load_yaml
from etl.targets import TARGET_NAMES, get_target


def _loc_text(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _pydantic_errors(exc: ValidationError, path: Path, lines: dict[Loc, int]) -> list[SpecError]:
    errors = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        loc = tuple(p for p in loc if p not in ("str", "dict[str,any]", "list[str]"))
        msg = err["msg"].removeprefix("Value error, ")
        hint = None
        if err["type"] == "extra_forbidden" and loc:
            msg = f"unknown key {loc[-1]!r}"
            parent = _model_at(loc[:-1])
            if parent is not None:
                known = sorted(f.alias or n for n, f in parent.model_fields.items())
                close = transforms.suggest(str(loc[-1]), known)
                hint = f"did you mean {close!r}?" if close else f"valid keys: {', '.join(known)}"
        elif err["type"] == "literal_error":
            hint = None
        errors.append(
            SpecError(msg, path=path, line=line_for(lines, loc), key=_loc_text(loc), hint=hint)
        )
    return errors


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The pydantic model that sits at `loc` in a Spec (to list its keys in hints)."""
    model: Any = Spec
    i = 0
    while i < len(loc):
        part = loc[i]
        fields = getattr(model, "model_fields", None)
        if fields is None:
            return None
        name = next((n for n, f in fields.items() if (f.alias or n) == part), None)
        if name is None:
            return None
        ann = fields[name].annotation
        text = str(ann)
        if name in ("mappings",):
            model, i = Mapping, i + 2
            continue
        if name == "rules":
            model, i = FieldRules, i + 2
            continue
        if name == "designations":
            model, i = Designation, i + 2
            continue
        if name == "when":
            model, i = Case, i + 2
            continue
        model = ann if isinstance(ann, type) else None
        if model is None and "KeyId" in text:
            model = KeyId
        if model is None and name == "match":
            model = Match
        i += 1
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _semantic_errors(
    spec: Spec, path: Path, lines: dict[Loc, int], partial: bool = False
) -> list[SpecError]:
    """Checks that need the target and the transform registry (`partial`: `spec` holds only
    the parts that passed pydantic, so checks about what is missing are left out)."""
    errors: list[SpecError] = []
    target = get_target(spec.target)

    def err(loc: Loc, msg: str, hint: str | None = None) -> None:
        errors.append(
            SpecError(msg, path=path, line=line_for(lines, loc), key=_loc_text(loc), hint=hint)
        )

    known_fields = sorted(target.fields)
    keyed = (target.source_field, target.id_field)
    for section, names in (("mappings", list(spec.mappings)), ("rules", list(spec.rules))):
        for field in names:
            if field in keyed:
                if section == "mappings":
                    err((section, field), f"{field} comes from `keys:`, not from mappings")
            elif target.kind(field) is None:
                close = transforms.suggest(field, known_fields)
                err(
                    (section, field),
                    f"{spec.target} has no field {field!r}",
                    f"did you mean {close!r}?" if close else f"see `etl fields {spec.target}`",
                )
            elif section == "rules" and field not in spec.mappings and not partial:
                err((section, field), f"{field} has rules but no mapping",
                    "add it under mappings:, or remove the rule")
    for field, rules in spec.rules.items():
        if rules.earliest is not None and target.kind(field) not in (None, "date"):
            err(("rules", field, "earliest"), f"earliest applies to date fields; {field} is "
                f"{target.kind(field)}")
    for field, mapping in spec.mappings.items():
        for place, name, args in mapping.all_steps():  # with the `then` / `else` mappings'
            loc: Loc = ("mappings", field, *place)
            if name not in transforms.REGISTRY:
                close = transforms.suggest(name, sorted(transforms.REGISTRY))
                err(
                    loc,
                    f"unknown transform {name!r}",
                    f"did you mean {close!r}?"
                    if close
                    else f"known: {', '.join(sorted(transforms.REGISTRY))}",
                )
                continue
            problem = transforms.check_args(name, args)
            if problem:
                err(loc, f"{name}: {problem}")
                continue
            try:  # building the expression checks the argument values (formats, regexes...)
                transforms.REGISTRY[name](pl.col("x"), **args)
            except (ValueError, TypeError, re.error) as exc:
                err(loc, f"{name}: {exc}")
    if spec.designations and spec.target != "gift_transaction":
        err(("designations",), "designations only apply to gift_transaction")
    if sum(d.amount is None for d in spec.designations) > 1:
        err(("designations",), "at most one designation may omit `amount` (it gets the rest)")
    if spec.target == "gift_transaction" and "amount" not in spec.mappings and not partial:
        err(("mappings",), "a gift_transaction needs a mapping for `amount`")
    if spec.match and spec.match.policy == "skip" and spec.target == "gift_transaction":
        err(("match", "policy"), "policy skip applies to contact_transaction only: a gift's "
            "donor existing does not mean the gift exists", "use send or changed")
    return errors


def spec_from_data(data: Any, path: Path, lines: dict[Loc, int]) -> Spec:
    """Validate already-parsed YAML data; raise SpecErrors listing every problem."""
    if not isinstance(data, dict):
        raise SpecError(
            "the spec must be a mapping of keys (name:, target:, source: ...)", path=path, line=1
        )
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        errors = _pydantic_errors(exc, path, lines)
        raise SpecErrors(errors + _errors_beside(data, path, lines)) from None
    problems = _semantic_errors(spec, path, lines)
    if problems:
        raise SpecErrors(problems)
    return spec


def _valid_entries(raw: Any, model: type[BaseModel]) -> dict[str, Any]:
    """The entries of a mapping section that pass pydantic on their own."""
    out: dict[str, Any] = {}
    for name, value in (raw if isinstance(raw, dict) else {}).items():
        try:
            out[name] = model.model_validate(value)
        except ValidationError:
            continue  # pydantic has reported it already
    return out


def _errors_beside(data: dict[str, Any], path: Path, lines: dict[Loc, int]) -> list[SpecError]:
    """When pydantic refused part of the spec, the semantic checks (unknown transforms and
    target fields...) still run on the mappings and rules that did validate, so that a typo in
    `source:` and one in `mappings:` come out in the same run, not one run each."""
    target = data.get("target")
    if target not in TARGET_NAMES:
        return []
    partial = Spec.model_construct(  # type: ignore[call-arg]  # only what the checks read
        target=target,
        mappings=_valid_entries(data.get("mappings"), Mapping),
        rules=_valid_entries(data.get("rules"), FieldRules),
        designations=[],
        match=None,
    )
    return _semantic_errors(partial, path, lines, partial=True)


def load_spec(path: str | Path) -> LoadedSpec:
    """Read and validate a pipeline spec file."""
    path = Path(path)
    problems: list[SpecError] = []
    data, lines = load_yaml(path, problems=problems)
    try:
        spec = spec_from_data(data, path, lines)
    except SpecErrors as exc:
        keys = {p.key for p in problems if p.key}  # a value YAML refused: said once
        raise SpecErrors(problems + [e for e in exc.errors if e.key not in keys]) from None
    except SpecError as exc:
        raise SpecErrors([*problems, exc]) from None
    if problems:
        raise SpecErrors(problems)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return LoadedSpec(spec=spec, path=path, sha256=digest)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the spec format, for editors."""
    schema = Spec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "etl pipeline spec"
    return schema


__all__ = [
    "TARGET_NAMES",
    "Case",
    "Designation",
    "FieldRules",
    "KeyId",
    "Keys",
    "Load",
    "LoadedSpec",
    "Mapping",
    "Match",
    "Output",
    "Source",
    "Spec",
    "json_schema",
    "load_spec",
    "spec_from_data",
    "template_columns",
]
