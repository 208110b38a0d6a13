"""hodei.api.fields.CachedFieldsMixin: fields built and bound once per class, each
instance with copies of its own, the same as DRF would have built."""

import pytest
from rest_framework import serializers

from hodei.api.fields import CachedFieldsMixin
from tests.factories import ExecutionFactory
from workermanager.api.serializers import ExecuteInputSerializer, ExecutionSerializer

pytestmark = pytest.mark.django_db


def built_by_drf(serializer):
    """The fields DRF itself would give ``serializer`` (its own ``fields`` property)."""
    return serializers.Serializer.fields.func(serializer)


@pytest.mark.parametrize("cls", [ExecutionSerializer, ExecuteInputSerializer])
def test_each_instance_gets_bound_copies_equal_to_drfs(cls):
    first, second = cls(), cls()
    expected = built_by_drf(cls())
    assert list(first.fields) == list(expected)
    for name, field in first.fields.items():
        drf = expected[name]
        assert type(field) is type(drf)
        assert field is not second.fields[name]
        assert (field.parent, second.fields[name].parent) == (first, second)
        assert (field.field_name, field.label, field.source, field.source_attrs) == (
            drf.field_name,
            drf.label,
            drf.source,
            drf.source_attrs,
        )
        assert (field.read_only, field.required, field.allow_null) == (
            drf.read_only,
            drf.required,
            drf.allow_null,
        )


def test_the_representation_is_drfs_and_each_instance_sees_its_own_context():
    execution = ExecutionFactory(status="queued", worker_type="nowhere")
    with_reason = ExecutionSerializer(execution, context={"with_waiting_reason": True})
    without = ExecutionSerializer(execution)
    plain = ExecutionSerializer(execution, context={"with_waiting_reason": True})
    plain.__dict__["fields"] = built_by_drf(plain)

    assert with_reason.data == plain.data
    assert with_reason.data["waiting_reason"] is not None
    assert without.data["waiting_reason"] is None


def test_a_serializer_with_nested_fields_is_refused():
    class Nested(CachedFieldsMixin, serializers.Serializer):
        names = serializers.ListField(child=serializers.CharField())

    with pytest.raises(TypeError, match="Nested.names"):
        _ = Nested().fields
