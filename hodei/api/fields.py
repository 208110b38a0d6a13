"""Serializer fields shared by the three APIs."""

import re

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.functional import cached_property
from rest_framework import serializers
from rest_framework.utils.serializer_helpers import BindingDict

from hodei.lib.validators import plain_text

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Label keys as Kubernetes writes them (an optional prefix/, then letters, digits, "-",
# "_", "."): no "=", "," or spaces that a k=v list would split on.
LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
MAX_MAP_ITEMS = 200


class StringMapField(serializers.JSONField):
    """A JSON object of string keys to string values (labels, environment)."""

    def __init__(
        self,
        *,
        key_pattern: re.Pattern | None = None,
        max_value_length=4096,
        plain_values: bool = False,
        **kwargs,
    ):
        self.key_pattern = key_pattern
        self.max_value_length = max_value_length
        self.plain_values = plain_values
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        data = super().to_internal_value(data)
        if not isinstance(data, dict):
            raise serializers.ValidationError("Must be a JSON object of strings.")
        if len(data) > MAX_MAP_ITEMS:
            raise serializers.ValidationError(f"At most {MAX_MAP_ITEMS} entries.")
        for key, value in data.items():
            # fullmatch: with match(), "$" also matches before a trailing newline.
            if self.key_pattern and not self.key_pattern.fullmatch(key):
                raise serializers.ValidationError(f"{key!r} is not a valid name.")
            if len(key) > 200:
                raise serializers.ValidationError("Keys are at most 200 characters.")
            if not isinstance(value, str):
                raise serializers.ValidationError(f"Value of {key!r} must be a string.")
            if len(value) > self.max_value_length:
                raise serializers.ValidationError(
                    f"Value of {key!r} is longer than {self.max_value_length} characters."
                )
            if self.plain_values:
                try:
                    plain_text(value)
                except DjangoValidationError as exc:
                    message = f"Value of {key!r}: {exc.messages[0]}"
                    raise serializers.ValidationError(message) from None
        return data


class JSONObjectField(serializers.JSONField):
    """Free-form metadata, but always a JSON object."""

    def to_internal_value(self, data):
        data = super().to_internal_value(data)
        if not isinstance(data, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return data


def env_field(**kwargs) -> StringMapField:
    return StringMapField(key_pattern=ENV_NAME, **kwargs)


def labels_field(**kwargs) -> StringMapField:
    return StringMapField(key_pattern=LABEL_KEY, max_value_length=200, plain_values=True, **kwargs)


def id_field(queryset, **kwargs) -> serializers.PrimaryKeyRelatedField:
    """An object given by its UUID (``pipeline_id``, ``job_ids``...): a 400 naming the
    field for an unknown or malformed id."""
    return serializers.PrimaryKeyRelatedField(
        queryset=queryset, pk_field=serializers.UUIDField(), **kwargs
    )


class CachedFieldsMixin:
    """A serializer whose fields are built and bound once per class, then copied for
    each instance. DRF builds a ModelSerializer's fields anew for every instance
    (reading the model's fields, deep-copying the declared ones) and binds each to it:
    about a millisecond for a thirty-field serializer, on the hot path of
    POST /api/v1/execute. Only for serializers whose fields never depend on their
    instance, data or context, and that have no nested fields (a field with a child is
    bound to its parent field, so it cannot be shared: such a class is refused).

    Binding sets a field's name, label, source and parent; all but the parent are the
    same for every instance of the class, so the prototypes are bound once and each
    instance gets shallow copies with itself as their parent. A shallow copy is enough:
    nothing else in a field changes after it is made. It is made by hand (a new object
    sharing a copy of the prototype's attribute dictionary): ``copy.copy`` goes through
    ``__reduce_ex__`` and costs five times as much."""

    @cached_property
    def fields(self):
        prototypes = type(self).__dict__.get("_bound_prototypes")
        if prototypes is None:
            prototypes = {}
            for name, field in self.get_fields().items():
                nested = isinstance(field, serializers.BaseSerializer) or any(
                    hasattr(field, attribute) for attribute in ("child", "child_relation")
                )
                if nested:
                    raise TypeError(f"{type(self).__name__}.{name}: nested fields are not cached")
                field.bind(field_name=name, parent=None)
                prototypes[name] = field
            type(self)._bound_prototypes = prototypes
        fields = BindingDict(self)
        for name, prototype in prototypes.items():
            field = _clone(prototype)
            field.parent = self
            fields.fields[name] = field
        return fields


def _clone(field):
    clone = object.__new__(type(field))
    clone.__dict__.update(field.__dict__)
    return clone
