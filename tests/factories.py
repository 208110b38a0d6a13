import factory
from django.contrib.auth import get_user_model

from orchestrator.models import Job, Pipeline
from scheduler.models import Schedule, Worker
from workermanager.models import Execution, ExecutionLog


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
    class Meta:
        model = Job

    pipeline = factory.SubFactory(PipelineFactory)
    name = factory.Sequence(lambda n: f"job-{n}")
    command = "echo hello"


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


class ExecutionLogFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ExecutionLog

    execution = factory.SubFactory(ExecutionFactory)
    seq = factory.Sequence(lambda n: n)
    stream = "stdout"
    message = "hello\n"
