"""Workflows on pipelines and jobs. Views, admin actions and commands call these."""

from django.db import transaction

from hodei.exceptions import Conflict, InvalidInput, NotFound
from hodei.lib import clock, secrets
from orchestrator import hooks
from orchestrator.models import JOB_SETTINGS, PIPELINE_SETTINGS, Job, Pipeline

PIPELINE_FIELDS = set(PIPELINE_SETTINGS)
JOB_FIELDS = set(JOB_SETTINGS)


def pipeline_create(*, name: str, **fields) -> Pipeline:
    _reject_unknown(fields, PIPELINE_FIELDS)
    now = clock.now()
    return Pipeline.objects.create(name=name, created_at=now, updated_at=now, **fields)


@transaction.atomic
def pipeline_update(*, pipeline: Pipeline, **fields) -> Pipeline:
    _reject_unknown(fields, PIPELINE_FIELDS)
    for name, value in fields.items():
        setattr(pipeline, name, value)
    pipeline.updated_at = clock.now()
    pipeline.save(update_fields=[*fields, "updated_at"])
    hooks.pipeline_changed.fire(pipeline, changed=set(fields))
    return pipeline


@transaction.atomic
def job_create(*, pipeline: Pipeline, depends_on: list[Job] | None = None, **fields) -> Job:
    _reject_unknown(fields, JOB_FIELDS)
    if "secret_env" in fields:
        fields["secret_env"] = secret_env_stored(fields["secret_env"], current={})
    if depends_on:
        _lock_pipelines({pipeline.pk})
    now = clock.now()
    job = Job.objects.create(pipeline=pipeline, created_at=now, updated_at=now, **fields)
    if depends_on:
        _set_dependencies(job, depends_on)
    return job


@transaction.atomic
def job_update(*, job: Job, depends_on: list[Job] | None = None, **fields) -> Job:
    _reject_unknown(fields, JOB_FIELDS | {"pipeline"})
    if depends_on is not None or "pipeline" in fields:
        # Lock the job's row first: its pipeline_id is then current (a concurrent move of
        # this job has committed or waits), then the pipelines involved. NO KEY UPDATE
        # locks: the foreign key checks PostgreSQL defers to COMMIT take KEY SHARE locks
        # on the jobs and pipelines referenced, which a FOR UPDATE would block (deadlock).
        current = (
            Job.objects.select_for_update(no_key=True)
            .filter(pk=job.pk)
            .values_list("pipeline_id", flat=True)
            .first()
        )
        if current is None:
            raise NotFound("Job not found.")
        job.pipeline_id = current
        _lock_pipelines({current, fields["pipeline"].pk if "pipeline" in fields else current})
    moving = "pipeline" in fields and fields["pipeline"].pk != job.pipeline_id
    keeps_upstream = depends_on is None and job.depends_on.exists()
    if moving and (keeps_upstream or job.dependents.exists()):
        raise InvalidInput(
            "A job linked to others by depends_on cannot move to another pipeline.",
            fields={"pipeline_id": ["Remove its dependencies first."]},
        )
    if "secret_env" in fields:
        fields["secret_env"] = secret_env_stored(fields["secret_env"], current=job.secret_env)
    for name, value in fields.items():
        setattr(job, name, value)
    job.updated_at = clock.now()
    job.save(update_fields=[*fields, "updated_at"])
    if depends_on is not None:
        _set_dependencies(job, depends_on)
    return job


def secret_env_stored(given: dict[str, str], *, current: dict[str, str]) -> dict[str, str]:
    """A job's stored (encrypted) secret variables once ``given`` is set: the mask as a
    value keeps the current one (so a body read with GET and sent back changes nothing),
    a name left out is removed, a new value is encrypted."""
    stored, errors = {}, []
    for name, value in given.items():
        if value == secrets.MASK:
            if name in current:
                stored[name] = current[name]
            else:
                errors.append(f"{name}: no stored value to keep ({secrets.MASK} keeps one).")
        elif len(value) < secrets.MIN_LENGTH:
            errors.append(
                f"{name}: a secret value has at least {secrets.MIN_LENGTH} characters, or it "
                "could not be masked in logs."
            )
        else:
            stored[name] = secrets.encrypt(value)
    if errors:
        raise InvalidInput("Invalid secret_env.", fields={"secret_env": errors})
    return stored


@transaction.atomic
def job_delete(*, job: Job, cascade: bool = False) -> None:
    """Delete a job. Its schedules would go with it: refused (409, naming them) unless
    ``cascade``. Its executions stay, with their logs, as history without a job (they
    go with retention)."""
    _refuse_if_scheduled(Job.objects.filter(pk=job.pk), cascade=cascade, what="This job")
    job.delete()


@transaction.atomic
def pipeline_delete(*, pipeline: Pipeline, cascade: bool = False) -> None:
    """Delete a pipeline and its jobs; refused (409) while a job of it has schedules,
    unless ``cascade``. Executions stay as history, as for a job."""
    _refuse_if_scheduled(pipeline.jobs.all(), cascade=cascade, what="A job of this pipeline")
    pipeline.delete()


def _refuse_if_scheduled(jobs, *, cascade: bool, what: str) -> None:
    if cascade:
        return
    schedules = [
        f"{schedule.pk} ({schedule})"
        for job in jobs.prefetch_related("schedules")
        for schedule in job.schedules.all()
    ]
    if schedules:
        raise Conflict(
            f"{what} has schedules, which deleting would delete too: {', '.join(schedules)}. "
            "Delete or re-point them first, or ask for it with ?cascade=true.",
            fields={"schedules": schedules},
        )


def _lock_pipelines(pipeline_ids: set) -> None:
    """Serialize dependency changes and moves of jobs within these pipelines.

    The checks below (same pipeline, no cycle) read the pipeline's edges and where its
    jobs are; two unserialized updates could each pass them and together close a cycle
    or link jobs of two pipelines. Locked in id order so that two updates never deadlock.
    """
    list(
        Pipeline.objects.select_for_update(no_key=True)
        .filter(pk__in=pipeline_ids)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _set_dependencies(job: Job, depends_on: list[Job]) -> None:
    validate_dependencies(job=job, depends_on=depends_on)
    job.depends_on.set(depends_on)


def validate_dependencies(*, job: Job, depends_on: list[Job]) -> None:
    """Raise InvalidInput unless ``job`` may depend on ``depends_on``: jobs of its own
    pipeline, not itself, no cycle. (Callers that then save hold the pipeline lock.)"""
    # Where the dependencies are now, read under the pipeline lock (one may have moved).
    pipeline_of = dict(
        Job.objects.filter(pk__in=[other.pk for other in depends_on]).values_list(
            "pk", "pipeline_id"
        )
    )
    for other in depends_on:
        if other.pk == job.pk:
            raise InvalidInput(
                "A job cannot depend on itself.", fields={"depends_on": [str(job.pk)]}
            )
        if pipeline_of.get(other.pk) != job.pipeline_id:
            raise InvalidInput(
                "Dependencies must be jobs of the same pipeline.",
                fields={"depends_on": [f"{other.pk} belongs to another pipeline."]},
            )
    if job.pk is not None and _creates_cycle(job, depends_on):
        raise InvalidInput(
            "Dependencies would form a cycle.", fields={"depends_on": ["Cycle detected."]}
        )


def _creates_cycle(job: Job, depends_on: list[Job]) -> bool:
    # Walk upstream from the new dependencies; reaching `job` means a cycle. One query per
    # level of the graph, over the edges of this pipeline only.
    edges: dict = {}
    through = Job.depends_on.through
    for from_id, to_id in through.objects.filter(from_job__pipeline_id=job.pipeline_id).values_list(
        "from_job_id", "to_job_id"
    ):
        if from_id != job.pk:
            edges.setdefault(from_id, set()).add(to_id)
    frontier = {d.pk for d in depends_on}
    seen: set = set()
    while frontier:
        if job.pk in frontier:
            return True
        seen |= frontier
        frontier = {up for node in frontier for up in edges.get(node, ())} - seen
    return False


def _reject_unknown(fields: dict, allowed: set) -> None:
    unknown = set(fields) - allowed
    if unknown:
        raise TypeError(f"Unknown fields: {sorted(unknown)}")
