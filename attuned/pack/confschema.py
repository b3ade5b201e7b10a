"""The pack configuration schema (`conf_schema`) and validation of `config` against it.

Two spellings exist in the wild: a JSON-Schema object (`type: object`, `properties`,
`required: [..]`) and Attune's flat mapping `name: {type, default, minimum, maximum,
required: true}`. Both normalise to the same list of `ConfField`s.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


class ConfField(BaseModel):
    """One configuration key and the rules its value must follow."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str | None = None
    description: str | None = None
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    required: bool = False
    enum: list[Any] | None = None
    secret: bool = False

    @model_validator(mode="after")
    def _known_type(self) -> ConfField:
        if self.type is not None and self.type not in _TYPES:
            raise ValueError(f"unknown type {self.type!r} (one of {', '.join(_TYPES)})")
        return self

    def check(self, name: str, value: Any) -> str | None:
        """Why `value` is not acceptable for this field, or None when it is."""
        if self.type is not None:
            allowed = _TYPES[self.type]
            is_bool = isinstance(value, bool)
            if not isinstance(value, allowed) or (is_bool and self.type != "boolean"):
                return f"{name}: expected {self.type}, got {type(value).__name__}"
        if self.enum is not None and value not in self.enum:
            return f"{name}: {value!r} is not one of {self.enum}"
        if isinstance(value, int | float) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                return f"{name}: {value} is below the minimum {self.minimum:g}"
            if self.maximum is not None and value > self.maximum:
                return f"{name}: {value} is above the maximum {self.maximum:g}"
        return None


class ConfSchema(BaseModel):
    """Normalised `conf_schema`; keeps the author's original spelling in `raw`."""

    model_config = ConfigDict(frozen=True)

    fields: dict[str, ConfField] = Field(default_factory=dict)
    raw: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("conf_schema must be a mapping")
        if "fields" in data and "raw" in data:  # already normalised (model_dump round trip)
            return data
        if data.get("type") == "object" or "properties" in data:
            properties = data.get("properties") or {}
            if not isinstance(properties, dict):
                raise ValueError("conf_schema.properties must be a mapping")
            required = data.get("required") or []
            if not isinstance(required, list):
                raise ValueError("conf_schema.required must be a list of names")
            fields = {
                name: {
                    **(spec or {}),
                    "required": name in required or bool((spec or {}).get("required")),
                }
                if isinstance(spec, dict) or spec is None
                else spec
                for name, spec in properties.items()
            }
        else:
            fields = data
        return {"fields": fields, "raw": data}

    def apply(self, config: dict[str, Any]) -> dict[str, Any]:
        """Fill defaults and check every value; raise ValueError listing what is wrong."""
        result = dict(config)
        problems = []
        for name, spec in self.fields.items():
            if name not in result and spec.default is not None:
                result[name] = spec.default
            if name not in result:
                if spec.required:
                    problems.append(f"{name}: required by conf_schema but not set")
                continue
            problem = spec.check(name, result[name])
            if problem:
                problems.append(problem)
        if problems:
            raise ValueError("; ".join(problems))
        return result

    def model_dump_raw(self) -> dict[str, Any]:
        return dict(self.raw)
