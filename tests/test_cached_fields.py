"""hodei.api.fields.CachedFieldsMixin: fields built and bound once per class, each
instance with copies of its own, the same as DRF would have built."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from rest_framework import serializers

from hodei.api.fields import CachedFieldsMixin
from tests.factories import ExecutionFactory
from workermanager.api.serializers import ExecuteInputSerializer, ExecutionSerializer
from workermanager.models import Execution

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


def represented_by_drf(serializer, instance):
    """What DRF's own Serializer.to_representation makes of ``instance``, with the fields
    DRF itself builds."""
    serializer.__dict__["fields"] = built_by_drf(serializer)
    return serializers.Serializer.to_representation(serializer, instance)


def test_the_representation_is_drfs_and_each_instance_sees_its_own_context():
    execution = ExecutionFactory(status="queued", worker_type="nowhere")
    with_reason = ExecutionSerializer(execution, context={"with_waiting_reason": True})
    without = ExecutionSerializer(execution)
    plain = ExecutionSerializer(execution, context={"with_waiting_reason": True})

    assert with_reason.data == represented_by_drf(plain, execution)
    assert with_reason.data["waiting_reason"] is not None
    assert without.data["waiting_reason"] is None


def test_a_finished_execution_with_every_field_set_is_represented_as_drf_does():
    execution = ExecutionFactory(
        status="failed",
        exit_code=3,
        error="exit status 3",
        env={"A": "1", "É": "ü"},
        outputs={"artifact": "a.tar"},
        timeout_seconds=60,
        memory_limit_mb=256,
        pids_limit=64,
        cpu_limit=1.5,
        log_bytes=2**40,
        log_truncated=True,
        cancel_requested=True,
        priority=-7,
    )
    execution.started_at = execution.created_at + timedelta(microseconds=1)
    execution.finished_at = execution.started_at + timedelta(seconds=2, microseconds=345678)
    execution.save()
    execution.refresh_from_db()

    data = ExecutionSerializer(execution).data
    assert data == represented_by_drf(ExecutionSerializer(), execution)
    assert data["finished_at"].endswith("Z") and data["duration_ms"] == 2345
    assert (data["job_id"], data["log_bytes"], data["cpu_limit"]) == (
        str(execution.job_id),
        2**40,
        1.5,
    )


class Thing:
    """An instance that exercises DRF's attribute lookup: a property that fails, a
    method called for its value, a nested source, a missing related object."""

    name = "thing"
    when = datetime(2026, 12, 8, 1, 2, 3, 456789, tzinfo=UTC)
    secret = "write only"
    owner = SimpleNamespace(name="owner", pk=None)

    @property
    def broken(self):
        raise AttributeError("no such thing")

    @property
    def gone(self):
        raise Execution.DoesNotExist

    def shout(self):
        return "THING"


class ThingSerializer(CachedFieldsMixin, serializers.Serializer):
    name = serializers.CharField()
    when = serializers.DateTimeField()
    secret = serializers.CharField(write_only=True)
    shout = serializers.CharField()
    owner_name = serializers.CharField(source="owner.name")
    broken_default = serializers.CharField(source="broken", default="fallback")
    broken_optional = serializers.CharField(source="broken", required=False)
    broken_nullable = serializers.IntegerField(source="broken", allow_null=True)
    gone = serializers.CharField()
    everything = serializers.SerializerMethodField()
    missing_optional = serializers.IntegerField(required=False)

    def get_everything(self, instance):
        return f"{type(instance).__name__} with {self.context.get('extra')}"


@pytest.mark.parametrize(
    "instance",
    [Thing(), {"name": "a dict", "when": Thing.when, "shout": "x", "owner": {"name": "o"}}],
    ids=["object", "mapping"],
)
def test_every_way_drf_reads_an_attribute_gives_drfs_result(instance):
    if isinstance(instance, dict):
        instance.update(broken=None, gone="here", missing_optional=None)
    ours = ThingSerializer(instance, context={"extra": 1}).data
    assert ours == represented_by_drf(ThingSerializer(context={"extra": 1}), instance)
    assert "secret" not in ours


def test_a_missing_required_attribute_fails_as_in_drf():
    class Strict(CachedFieldsMixin, serializers.Serializer):
        nowhere = serializers.CharField()

    with pytest.raises(AttributeError, match="nowhere") as ours:
        _ = Strict(Thing()).data
    with pytest.raises(AttributeError, match="nowhere") as drf:
        represented_by_drf(Strict(), Thing())
    assert str(ours.value) == str(drf.value)


def test_reading_a_representation_copies_only_the_fields_that_look_at_their_parent():
    execution = ExecutionFactory()
    ExecutionSerializer(execution).data  # noqa: B018 - the class's plan is built
    serializer = ExecutionSerializer(execution)
    _ = serializer.data
    assert "fields" not in serializer.__dict__
    assert list(serializer.__dict__["_own_fields"]) == ["waiting_reason"]
    assert serializer.__dict__["_own_fields"]["waiting_reason"].parent is serializer


def test_a_serializer_with_nested_fields_is_refused():
    class Nested(CachedFieldsMixin, serializers.Serializer):
        names = serializers.ListField(child=serializers.CharField())

    with pytest.raises(TypeError, match="Nested.names"):
        _ = Nested().fields
