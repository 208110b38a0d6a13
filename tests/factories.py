import uuid
from datetime import UTC, datetime, timedelta

import factory
from django.contrib.auth import get_user_model

from hodei.lib import clock
from orchestrator.models import Job, Pipeline
from scheduler.models import Schedule, ScheduleFire
from workermanager.models import (
    Execution,
    ExecutionLog,
    ManagedWorker,
    PoolScaling,
    Worker,
    WorkerPool,
)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")


class PipelineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Pipeline

    name = factory.Sequence(lambda n: f"pipeline-{n}")


class JobFactory(factory.django.DjangoModelFactory):
    """``secret_env`` is given in plaintext and stored encrypted, as the services do."""

    class Meta:
        model = Job

    pipeline = factory.SubFactory(PipelineFactory)
    name = factory.Sequence(lambda n: f"job-{n}")
    command = "echo hello"

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        from hodei.lib.secrets import encrypt_env

        kwargs["secret_env"] = encrypt_env(kwargs.get("secret_env") or {})
        return super()._create(model_class, *args, **kwargs)


class ScheduleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Schedule

    job = factory.SubFactory(JobFactory)
    cron = "*/5 * * * *"


class WorkerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Worker

    name = factory.Sequence(lambda n: f"worker-{n}")
    type = "default"


class ExecutionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Execution

    job = factory.SubFactory(JobFactory)
    command = factory.LazyAttribute(lambda o: o.job.command if o.job else "echo hello")


def uuid7_at(at: datetime) -> uuid.UUID:
    """A UUIDv7 of the instant ``at``: rows made to look old get old ids, as real ones
    have (ids sort by creation time)."""
    ms = int(at.timestamp() * 1000)
    rand = uuid.uuid4().int
    value = (ms << 80) | (0x7 << 76) | ((rand & 0xFFF) << 64) | (0b10 << 62)
    return uuid.UUID(int=value | (rand >> 66))


class FinishedExecutionFactory(ExecutionFactory):
    """An execution that finished a second after it was created at ``created_at``
    (default now), with an id of that time. For an active one pass ``status`` and
    ``finished_at=None``."""

    id = factory.LazyAttribute(lambda o: uuid7_at(o.created_at))
    created_at = factory.LazyFunction(clock.now)
    status = "succeeded"
    exit_code = 0
    started_at = factory.LazyAttribute(lambda o: o.created_at)
    finished_at = factory.LazyAttribute(lambda o: o.created_at + timedelta(seconds=1))


class ExecutionLogFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ExecutionLog

    execution = factory.SubFactory(ExecutionFactory)
    seq = factory.Sequence(lambda n: n)
    stream = "stdout"
    message = "hello\n"


class ManagedWorkerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ManagedWorker

    name = factory.Sequence(lambda n: f"managed-default-{n:012x}")
    type = "default"
    status = "stopped"


class WorkerPoolFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WorkerPool

    worker_type = factory.Sequence(lambda n: f"pool-type-{n}")
    max_workers = 3


class PoolScalingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PoolScaling

    pool = factory.SubFactory(WorkerPoolFactory)
    from_workers = 0
    to_workers = 1
    reason = "queue"
    detail = "2 queued execution(s), 0 free slot(s)"


class ScheduleFireFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ScheduleFire

    schedule = factory.SubFactory(ScheduleFactory)
    slot_at = factory.Sequence(lambda n: datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=n))
    outcome = "fired"


def role_user(role: str, **fields):
    """A staff user in one of Hodei's groups ("Hodei operators" or "Hodei viewers"),
    which the accounts migration creates."""
    from django.apps import apps
    from django.contrib.auth.models import Group

    from accounts.roles import sync_roles

    if not Group.objects.filter(name=role).exists():
        # A transactional test's flush empties the tables the migration filled;
        # recreate the groups exactly as the migration does.
        sync_roles(apps)
    user = UserFactory(is_staff=True, **fields)
    user.groups.add(Group.objects.get(name=role))
    return user


def logged_in(user):
    """A django.test.Client with ``user`` logged in (the admin is on the default URLconf,
    the orchestrator's)."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


def admin_form_data(response, **overrides) -> dict:
    """The POST data an admin add/change page would submit unchanged (its main form and
    the management forms and rows of its inlines), with ``overrides`` applied."""
    from django.forms import ModelMultipleChoiceField, MultipleChoiceField, MultiWidget

    data: dict = {}

    def add(form) -> None:
        for bound in form:
            if bound.field.disabled:
                continue
            value = bound.value()
            if isinstance(bound.field.widget, MultiWidget):
                parts = bound.field.widget.decompress(value)
                for i, part in enumerate(parts):
                    data[f"{bound.html_name}_{i}"] = "" if part is None else str(part)
                continue
            if isinstance(value, bool):
                if value:
                    data[bound.html_name] = "on"
                continue
            if isinstance(bound.field, MultipleChoiceField | ModelMultipleChoiceField):
                value = [str(v) for v in value or ()]
            elif value is None:
                value = ""
            elif isinstance(value, list | tuple):
                value = [str(v) for v in value]
            else:
                value = str(value)
            data[bound.html_name] = value
            if bound.field.show_hidden_initial:
                data[form.add_initial_prefix(bound.name)] = value

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        for key, value in formset.management_form.initial.items():
            data[f"{formset.prefix}-{key}"] = value
        for form in formset.forms:
            add(form)
    data.update(overrides)
    return data


def change_url(obj) -> str:
    """The admin page of ``obj``."""
    from django.urls import reverse

    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def action(client, url, name, objects, **extra):
    """Run the admin action ``name`` of the changelist at ``url`` on ``objects``."""
    data = {"action": name, "_selected_action": [str(o.pk) for o in objects], **extra}
    return client.post(url, data, follow=True)


def messages_of(response) -> list[str]:
    """The texts of the messages shown on a (followed) admin response."""
    return [str(m) for m in response.context["messages"]]


def start(execution: Execution, *, worker: Worker, now: datetime) -> Execution:
    """Test set-up: ``execution`` running on ``worker`` since ``now`` (the claim's
    transition, for one chosen execution at a chosen time)."""
    fields = Execution._start_fields(execution, worker=worker, now=now)
    assert execution._transition("running", **fields)
    return execution


def stored_secrets(job) -> dict[str, str]:
    """A job's secret variables, decrypted (they are stored encrypted)."""
    from hodei.lib.secrets import decrypt_env

    job.refresh_from_db(fields=["secret_env"])
    return decrypt_env(job.secret_env)
