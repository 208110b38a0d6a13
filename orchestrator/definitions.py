"""Pipelines as code: one YAML (or JSON) document describes a pipeline and its jobs.

    name: release
    description: Build, test and ship
    jobs:
      - name: lint
        command: make lint
        allow_failure: true
      - name: build
        command: make build
        needs: [lint]
        secret_env: [REGISTRY_TOKEN]   # names only: values are set through the API

A document is validated whole before anything changes (every error names the job and the
field; a cycle names its jobs; an unknown need names the missing job), then applied in
one transaction: jobs are matched by name, added, changed or removed, and a job that did
not change keeps its id. Exporting writes the same canonical form, so export -> apply ->
export is the identity."""

import json
from dataclasses import dataclass, field

import yaml
from django.core.exceptions import ValidationError
from django.db import transaction
from rest_framework import serializers

from hodei.api.fields import env_field, labels_field
from hodei.exceptions import InvalidInput
from hodei.lib import secrets
from orchestrator import services
from orchestrator.models import JOB_SETTINGS, Job, Pipeline

# A job's keys in a document: its settings (secret_env as names), and what it needs.
JOB_KEYS = (*JOB_SETTINGS, "needs")
PIPELINE_KEYS = ("name", "description", "status", "metadata", "jobs")
MAX_JOBS = 2000


def parse(text: str | bytes) -> dict:
    """A document from YAML or JSON text (YAML is a superset; parsed with safe_load)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        message = f"Not a YAML or JSON document: {exc}"
        raise InvalidInput(message, fields={"document": [str(exc)]}) from None
    if not isinstance(document, dict):
        raise InvalidInput(
            "A pipeline document is a mapping.", fields={"document": ["Not a mapping."]}
        )
    return document


@dataclass
class Plan:
    """What applying a document changes (a dry run prints it)."""

    pipeline: Pipeline | None
    name: str
    pipeline_changes: dict = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)  # job -> fields
    removed: list[str] = field(default_factory=list)
    jobs: dict[str, dict] = field(default_factory=dict)  # name -> settings to set
    created: bool = False  # the pipeline is (or would be) new

    @property
    def is_noop(self) -> bool:
        return not (
            self.created or self.pipeline_changes or self.added or self.changed or self.removed
        )

    def summary(self) -> dict:
        return {
            "pipeline": self.name,
            "created": self.created,
            "pipeline_changes": sorted(self.pipeline_changes),
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
        }


def plan(document: dict, *, pipeline: Pipeline | None) -> Plan:
    """Validate ``document`` whole and compute what applying it to ``pipeline`` (None:
    a new pipeline) changes. InvalidInput naming every problem; nothing is written."""
    errors: dict[str, list[str]] = {}
    for key in sorted(set(document) - set(PIPELINE_KEYS)):
        errors.setdefault(key, []).append("Unknown key.")
    name = document.get("name")
    if not isinstance(name, str) or not name.strip():
        errors.setdefault("name", []).append("A pipeline has a name.")
    raw_jobs = document.get("jobs", [])
    if not isinstance(raw_jobs, list) or len(raw_jobs) > MAX_JOBS:
        errors.setdefault("jobs", []).append(f"A list of at most {MAX_JOBS} jobs.")
        raw_jobs = []
    existing = {j.name: j for j in pipeline.jobs.prefetch_related("depends_on")} if pipeline else {}
    if pipeline is not None and len(existing) != pipeline.jobs.count():
        errors.setdefault("jobs", []).append(
            "Jobs of this pipeline share a name: a definition matches jobs by name, so "
            "rename them first."
        )
    jobs: dict[str, dict] = {}
    for index, raw in enumerate(raw_jobs):
        where = f"jobs[{index}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
            errors.setdefault(where, []).append("A job is a mapping with a name.")
            continue
        where = f"jobs.{raw['name']}"
        if raw["name"] in jobs:
            errors.setdefault(f"{where}.name", []).append("Two jobs have this name.")
            continue
        jobs[raw["name"]] = _job_settings(raw, where, existing.get(raw["name"]), errors)
    _check_needs(jobs, errors)
    pipeline_changes = _pipeline_changes(document, pipeline, errors)
    if errors:
        raise InvalidInput("Invalid pipeline document.", fields=errors)
    result = Plan(
        pipeline=pipeline,
        name=name,
        pipeline_changes=pipeline_changes,
        jobs=jobs,
        created=pipeline is None,
    )
    for job_name, settings in jobs.items():
        job = existing.get(job_name)
        if job is None:
            result.added.append(job_name)
            continue
        differs = [key for key, value in settings.items() if _current(job, key) != value]
        if differs:
            result.changed[job_name] = differs
    result.removed = sorted(set(existing) - set(jobs))
    return result


def _job_settings(raw: dict, where: str, job: Job | None, errors: dict) -> dict:
    """A job's settings from the document, validated as the model declares them."""
    for key in sorted(set(raw) - set(JOB_KEYS)):
        errors.setdefault(f"{where}.{key}", []).append("Unknown key.")
    settings = {key: raw[key] for key in JOB_KEYS if key in raw and key != "needs"}
    settings = {**{k: v for k, v in _defaults().items() if k != "secret_env"}, **settings}
    needs = raw.get("needs", [])
    if not isinstance(needs, list) or not all(isinstance(n, str) for n in needs):
        errors.setdefault(f"{where}.needs", []).append("A list of job names.")
        needs = []
    settings["needs"] = sorted(set(needs))
    secret_env = raw.get("secret_env", [] if job is None else list(job.secret_env))
    settings["secret_env"] = _secret_env(secret_env, where, job, errors)
    for key, check in (("env", env_field()), ("labels", labels_field())):
        try:
            check.to_internal_value(settings[key])
        except serializers.ValidationError as exc:
            errors.setdefault(f"{where}.{key}", []).extend(str(m) for m in exc.detail)
    probe = Job(**{k: v for k, v in settings.items() if k not in ("needs", "secret_env")})
    try:
        probe.full_clean(exclude=["pipeline", "depends_on", "secret_env"], validate_unique=False)
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            errors.setdefault(f"{where}.{name}", []).extend(messages)
    return settings


def _secret_env(given, where: str, job: Job | None, errors: dict) -> list[str] | dict:
    """Names keep the stored values; a mapping sets values (they are never exported)."""
    current = job.secret_env if job else {}
    if isinstance(given, list) and all(isinstance(n, str) for n in given):
        missing = sorted(set(given) - set(current))
        if missing:
            errors.setdefault(f"{where}.secret_env", []).append(
                f"No stored value for {', '.join(missing)}: give a value (a mapping) or set it "
                "through the API; definitions never hold secret values."
            )
        return sorted(given)
    if isinstance(given, dict) and all(isinstance(v, str) for v in given.values()):
        return given
    errors.setdefault(f"{where}.secret_env", []).append("A list of names, or a mapping.")
    return []


def pipeline_named(name) -> Pipeline | None:
    """The pipeline a document (or a command) names: names are not unique, so the oldest
    of that name, the one ``apply`` keeps updating."""
    return Pipeline.objects.filter(name=name).order_by("id").first() if name else None


def _defaults() -> dict:
    """Each job setting's default (a document that leaves one out means it)."""
    return {f.name: f.get_default() for f in Job._meta.concrete_fields if f.name in JOB_SETTINGS}


def _check_needs(jobs: dict[str, dict], errors: dict) -> None:
    for name, settings in jobs.items():
        for need in settings["needs"]:
            if need == name:
                errors.setdefault(f"jobs.{name}.needs", []).append("A job cannot need itself.")
            elif need not in jobs:
                errors.setdefault(f"jobs.{name}.needs", []).append(f"No job named {need!r}.")
    cycle = _cycle({n: [d for d in s["needs"] if d in jobs and d != n] for n, s in jobs.items()})
    if cycle:
        errors.setdefault("jobs", []).append(f"The needs form a cycle: {' -> '.join(cycle)}.")


def _cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A cycle of ``graph`` (each node's needs) as a path back to its start, or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for need in sorted(graph[node]):
            if state.get(need) == 1:
                return [*path[path.index(need) :], need]
            if need not in state:
                found = visit(need)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _pipeline_changes(document: dict, pipeline: Pipeline | None, errors: dict) -> dict:
    changes = {}
    for key in ("description", "status", "metadata"):
        if key not in document:
            continue
        value = document[key]
        if pipeline is None or getattr(pipeline, key) != value:
            changes[key] = value
    probe = Pipeline(name=document.get("name") or "x", **changes)
    try:
        probe.full_clean(validate_unique=False)
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            errors.setdefault(name, []).extend(messages)
    if pipeline is not None and document.get("name") != pipeline.name:
        changes["name"] = document.get("name")
    return changes


def _current(job: Job, key: str):
    if key == "needs":
        return sorted(j.name for j in job.depends_on.all())
    if key == "secret_env":
        return sorted(job.secret_env)
    return getattr(job, key)


@transaction.atomic
def apply(document: dict, *, pipeline: Pipeline | None = None) -> Plan:
    """Apply ``document`` to ``pipeline``, or to the pipeline of its name (created if
    there is none), in one transaction. Returns the plan it carried out."""
    if pipeline is None:
        pipeline = pipeline_named(document.get("name"))
    if pipeline is not None:
        # Locked: two applies of one pipeline would each add the jobs the other adds.
        pipeline = Pipeline.objects.select_for_update().get(pk=pipeline.pk)
    result = plan(document, pipeline=pipeline)
    if pipeline is None:
        pipeline = services.pipeline_create(
            name=result.name, **{k: v for k, v in result.pipeline_changes.items() if k != "name"}
        )
    elif result.pipeline_changes:
        services.pipeline_update(pipeline=pipeline, **result.pipeline_changes)
    by_name = {j.name: j for j in pipeline.jobs.prefetch_related("depends_on")}
    for name in result.removed:
        services.job_delete(job=by_name.pop(name))  # 409 if it has schedules
    for name, settings in result.jobs.items():
        fields = {k: v for k, v in settings.items() if k not in ("needs", "secret_env")}
        secret = settings["secret_env"]
        if isinstance(secret, list):  # names: keep those stored values, drop the others
            secret = {n: secrets.MASK for n in secret}
        job = by_name.get(name)
        if job is None:
            by_name[name] = services.job_create(pipeline=pipeline, secret_env=secret, **fields)
        elif name in result.changed:
            services.job_update(job=job, secret_env=secret, **fields)
    for name, settings in result.jobs.items():
        job = by_name[name]
        wanted = sorted(settings["needs"])
        if sorted(j.name for j in job.depends_on.all()) != wanted:
            services.job_update(job=job, depends_on=[by_name[n] for n in wanted])
    result.pipeline = pipeline
    return result


def export(pipeline: Pipeline) -> dict:
    """The pipeline's document in canonical form: each job's name, command and needs,
    and every other setting that is not its default; secret variables by name."""
    defaults = _defaults()
    jobs = []
    for job in pipeline.jobs.prefetch_related("depends_on").order_by("name", "id"):
        entry = {"name": job.name, "command": job.command}
        for key in JOB_SETTINGS:
            if key in ("name", "command", "secret_env"):
                continue
            value = getattr(job, key)
            if value != defaults.get(key):
                entry[key] = value
        if job.secret_env:
            entry["secret_env"] = sorted(job.secret_env)
        entry["needs"] = sorted(j.name for j in job.depends_on.all())
        jobs.append(entry)
    document = {"name": pipeline.name}
    if pipeline.description:
        document["description"] = pipeline.description
    if pipeline.status != Pipeline._meta.get_field("status").default:
        document["status"] = pipeline.status
    if pipeline.metadata:
        document["metadata"] = pipeline.metadata
    document["jobs"] = jobs
    return document


def to_yaml(document: dict) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False)


def to_json(document: dict) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)
