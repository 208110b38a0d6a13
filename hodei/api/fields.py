"""Serializer fields shared by the three APIs."""

import re
from collections.abc import Mapping

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.functional import cached_property
from rest_framework import serializers
from rest_framework.fields import SkipField
from rest_framework.relations import PKOnlyObject
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

    def to_representation(self, instance):
        """DRF's ``Serializer.to_representation``, reading through the class's bound
        prototypes where a field never looks at its parent (``PARENT_FREE``): those are
        not copied for the instance, and a plain attribute is read with ``getattr``.
        A field that may look at its parent (a method field, a related field), a
        dotted or ``*`` source, a dictionary instance, a callable or missing attribute
        go through DRF's own path on this instance's copy of the field."""
        plan = type(self).__dict__.get("_representation_plan")
        if plan is None:
            plan = self._representation_plan_build()
        mapping = isinstance(instance, Mapping)
        ret = {}
        for name, shared, attribute in plan:
            value = _ABSENT
            if shared is not None and attribute is not None and not mapping:
                try:
                    value = getattr(instance, attribute)
                except Exception:  # DRF's path decides: None, a default, skip, raise
                    value = _ABSENT
                else:
                    if callable(value):
                        value = _ABSENT
            field = shared
            if value is _ABSENT:
                field = self._own_field(name)
                try:
                    value = field.get_attribute(instance)
                except SkipField:
                    continue
            check_for_none = value.pk if isinstance(value, PKOnlyObject) else value
            ret[name] = None if check_for_none is None else field.to_representation(value)
        return ret

    def _representation_plan_build(self):
        self.fields  # noqa: B018 - binds the class's prototypes
        plan = []
        for name, prototype in type(self)._bound_prototypes.items():
            if prototype.write_only:
                continue
            shared = prototype if type(prototype) in PARENT_FREE else None
            attrs = prototype.source_attrs
            plan.append((name, shared, attrs[0] if len(attrs) == 1 else None))
        type(self)._representation_plan = plan
        return plan

    def _own_field(self, name: str):
        """This instance's copy of the field ``name``, bound to it, without copying the
        others (they are, all at once, when ``fields`` is read)."""
        if "fields" in self.__dict__:
            return self.fields[name]
        own = self.__dict__.setdefault("_own_fields", {})
        field = own.get(name)
        if field is None:
            field = own[name] = _clone(type(self)._bound_prototypes[name])
            field.parent = self
        return field


_ABSENT = object()

# DRF's field types whose get_attribute (when the attribute is there) and
# to_representation depend on the value and the field's own options only: never on the
# parent serializer, its instance or its context. Exact types: a subclass may override
# either, and goes through its own bound copy (this module's two JSON fields override
# only to_internal_value).
PARENT_FREE = frozenset(
    {
        JSONObjectField,
        StringMapField,
        serializers.BigIntegerField,
        serializers.BooleanField,
        serializers.CharField,
        serializers.ChoiceField,
        serializers.DateTimeField,
        serializers.DecimalField,
        serializers.FloatField,
        serializers.IntegerField,
        serializers.JSONField,
        serializers.ReadOnlyField,
        serializers.UUIDField,
    }
)


def _clone(field):
    clone = object.__new__(type(field))
    clone.__dict__.update(field.__dict__)
    return clone
