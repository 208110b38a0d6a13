"""The admin of pipeline runs, and the pipeline page's graph and "Run pipeline", driven
through Django's test client. Runs move as an agent would move them: claimed, then
settled through the worker manager's services (the hook advances the run)."""

import re
import uuid
import xml.etree.ElementTree as ET

import pytest
from django.contrib.auth.models import Group

from accounts.permissions import RUN
from accounts.roles import OPERATORS, VIEWERS
from hodei.lib import dag_svg
from orchestrator.choices import PipelineStatus
from pipelines import services
from pipelines.models import PipelineRun
from tests.factories import (
    JobFactory,
    PipelineFactory,
    WorkerFactory,
    change_url,
    messages_of,
    role_user,
)
from workermanager.models import Execution, Worker
from workermanager.services import execution_settle, executions_claim

pytestmark = pytest.mark.django_db

RUNS = "/admin/pipelines/pipelinerun/"


def diamond(**commands):
    """a -> b, a -> c, (b, c) -> d: (pipeline, {name: job})."""
    pipeline = PipelineFactory(name="diamond")
    jobs = {
        n: JobFactory(pipeline=pipeline, name=n, command=commands.get(n, "true")) for n in "abcd"
    }
    jobs["b"].depends_on.set([jobs["a"]])
    jobs["c"].depends_on.set([jobs["a"]])
    jobs["d"].depends_on.set([jobs["b"], jobs["c"]])
    return pipeline, jobs


def attempt(run, job) -> Execution:
    return run.executions.filter(job=job).order_by("-id").first()


def play(run, job, status="succeeded", **report):
    """An agent's part for one job of ``run``: claim what is queued, report ``status``."""
    worker = Worker.objects.filter(name="admin-test-agent").first()
    worker = worker or WorkerFactory(name="admin-test-agent")
    executions_claim(worker=worker, limit=100)
    execution = attempt(run, job)
    assert execution.status == "running", execution.status
    exit_code = 0 if status == "succeeded" else 1
    execution_settle(
        execution=execution, worker=worker, status=status, exit_code=exit_code, **report
    )
    run.refresh_from_db()
    return execution


def svg(html: str) -> ET.Element:
    match = re.search(r"<svg class=\"hodei-dag-svg\".*?</svg>", html, re.S)
    assert match, "no SVG on the page"
    return ET.fromstring(match.group(0))


def drawn(html: str) -> tuple[dict, dict, set]:
    """The graph on a page: {node id: state}, {node id: link}, {(from, to)}."""
    root = svg(html)
    nodes = [g for g in root.iter("g") if g.get("class") == "hodei-dag-node"]
    states = {g.get("data-id"): g.get("data-state") for g in nodes}
    links = {g.get("data-id"): next((a.get("href") for a in g.iter("a")), None) for g in nodes}
    edges = {
        (p.get("data-from"), p.get("data-to"))
        for p in root.iter("path")
        if p.get("class") == "hodei-dag-edge"
    }
    return states, links, edges


def ids(jobs: dict, *names) -> list[str]:
    return [str(jobs[n].pk) for n in names]


def state_json(client, run):
    return client.get(f"{RUNS}{run.pk}/state.json")


# -- the pipeline's page ---------------------------------------------------------------


def test_pipeline_page_draws_one_node_per_job_and_one_edge_per_dependency(viewer):
    pipeline, jobs = diamond()
    JobFactory(pipeline=PipelineFactory(), name="elsewhere")  # another pipeline's job
    html = viewer.get(change_url(pipeline)).content.decode()
    states, links, edges = drawn(html)
    a, b, c, d = ids(jobs, *"abcd")
    assert set(states) == {a, b, c, d}
    assert edges == {(a, b), (a, c), (b, d), (c, d)}
    # Never run: every node grey, and it says so.
    assert set(states.values()) == {""}
    assert "Never run" in html and html.count(">not run</text>") == 4
    assert links[a] == f"/admin/orchestrator/job/{a}/change/"


def test_pipeline_page_columns_follow_the_dependencies():
    nodes = [dag_svg.Node(id=n, label=n) for n in "abcd"]
    edges = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]
    assert dag_svg.levels("abcd", edges) == {"a": 0, "b": 1, "c": 1, "d": 2}
    placed = {p.node.id: p for p in dag_svg.layout(nodes, edges)["nodes"]}
    assert placed["a"].x < placed["b"].x == placed["c"].x < placed["d"].x
    assert placed["b"].y != placed["c"].y
    # a and d are centred on the middle column.
    assert placed["a"].y == placed["d"].y == (placed["b"].y + placed["c"].y) // 2


def test_an_edge_that_skips_a_column_runs_between_its_nodes_not_under_them():
    nodes = [dag_svg.Node(id=n, label=n) for n in "abc"]
    drawing = dag_svg.layout(nodes, [("a", "b"), ("b", "c"), ("a", "c")])
    placed = {p.node.id: p for p in drawing["nodes"]}
    long = next(e for e in drawing["edges"] if (e.source, e.target) == ("a", "c"))
    # Straight across the middle column, beside b.
    across = re.search(r" L(\d+),(\d+)", long.path)
    assert across and int(across.group(1)) == placed["b"].x + dag_svg.NODE_WIDTH
    y = int(across.group(2))
    assert not placed["b"].y <= y <= placed["b"].y + dag_svg.NODE_HEIGHT
    assert long.path.endswith(f"{placed['c'].x - 4},{placed['c'].y + dag_svg.NODE_HEIGHT // 2}")


def test_the_drawing_survives_cycles_long_names_and_markup():
    nodes = [
        dag_svg.Node(id="x", label="<b>" + "very-long-job-name-" * 3),
        dag_svg.Node(id="y", label="y"),
    ]
    html = dag_svg.render(nodes, [("x", "y"), ("y", "x"), ("x", "missing")])
    assert "<b>" not in html and "&lt;b&gt;" in html
    states, _, edges = drawn(html)
    assert set(states) == {"x", "y"} and edges == {("x", "y"), ("y", "x")}
    assert "very-long-job-name-very-long-job-name-very-long-job-name-</title>" in html
    assert "…</text>" in html


def test_pipeline_page_is_coloured_by_the_latest_run(operator):
    pipeline, jobs = diamond()
    old = services.pipeline_run_start(pipeline=pipeline)
    for name in "abcd":
        play(old, jobs[name])
    assert old.status == "succeeded"
    latest = services.pipeline_run_start(pipeline=pipeline)
    play(latest, jobs["a"])
    play(latest, jobs["b"], "failed")
    added = JobFactory(pipeline=pipeline, name="added-since")

    html = operator.get(change_url(pipeline)).content.decode()
    states, _, _ = drawn(html)
    a, b, c, d = ids(jobs, *"abcd")
    assert states == {a: "succeeded", b: "failed", c: "running", d: "skipped", str(added.pk): ""}
    assert f"/admin/pipelines/pipelinerun/{latest.pk}/change/" in html
    runs = re.search(r'id="hodei-pipeline-runs".*?</fieldset>', html, re.S).group(0)
    assert runs.count("/admin/pipelines/pipelinerun/") == 3  # two runs and "all runs"
    assert f"?pipeline__id__exact={pipeline.pk}" in runs


def test_pipeline_without_jobs_says_so(operator):
    html = operator.get(change_url(PipelineFactory())).content.decode()
    assert "No jobs yet" in html and "hodei-dag-svg" not in html


def test_operator_runs_the_pipeline_and_lands_on_its_run(operator):
    pipeline, jobs = diamond()
    page = operator.get(change_url(pipeline)).content.decode()
    assert 'id="hodei-run-pipeline"' in page
    response = operator.post(f"{change_url(pipeline)}run/".replace("/change/", "/"), follow=True)
    run = PipelineRun.objects.get()
    assert response.redirect_chain[-1][0] == change_url(run)
    assert (run.pipeline, run.trigger, run.status) == (pipeline, "admin", "queued")
    assert f"{pipeline}: run started." in messages_of(response)
    assert run.executions.count() == 4


def run_url(pipeline) -> str:
    return f"/admin/orchestrator/pipeline/{pipeline.pk}/run/"


def test_viewer_cannot_run_a_pipeline(viewer):
    pipeline, _ = diamond()
    page = viewer.get(change_url(pipeline))
    assert page.status_code == 200
    assert 'id="hodei-run-pipeline"' not in page.content.decode()
    assert viewer.post(run_url(pipeline)).status_code == 403
    assert not PipelineRun.objects.exists()


def test_running_needs_the_run_permission_not_the_change_one(db):
    # A user who may change pipelines but not run anything (the Rundeck split).
    pipeline, _ = diamond()
    user = role_user(VIEWERS)
    user.user_permissions.add(*_perms("orchestrator.change_pipeline"))
    from tests.factories import logged_in

    client = logged_in(user)
    assert client.post(run_url(pipeline)).status_code == 403
    assert not PipelineRun.objects.exists()


def _perms(*names):
    from django.contrib.auth.models import Permission

    for name in names:
        app_label, codename = name.split(".")
        yield Permission.objects.get(content_type__app_label=app_label, codename=codename)


def test_running_an_archived_pipeline_shows_the_reason(operator):
    pipeline, _ = diamond()
    pipeline.status = PipelineStatus.ARCHIVED
    pipeline.save()
    response = operator.post(run_url(pipeline), follow=True)
    assert response.redirect_chain[-1][0] == change_url(pipeline)
    [message] = response.context["messages"]
    assert "archived" in str(message) and message.level_tag == "error"
    assert not PipelineRun.objects.exists()


def test_running_is_a_post(operator):
    pipeline, _ = diamond()
    assert operator.get(run_url(pipeline)).status_code == 405
    assert operator.post(f"/admin/orchestrator/pipeline/{uuid.uuid4()}/run/").status_code == 404
    assert not PipelineRun.objects.exists()


# -- the runs changelist ---------------------------------------------------------------


def listed(client, **params) -> set:
    response = client.get(RUNS, params)
    assert response.status_code == 200
    assert "?e=1" not in response.get("Location", "")
    return set(response.context["cl"].result_list)


def test_run_changelist_shows_badges_and_filters(operator, viewer):
    pipeline, jobs = diamond()
    other = PipelineFactory(name="other")
    done = services.pipeline_run_start(pipeline=pipeline)
    for name in "abcd":
        play(done, jobs[name])
    queued = services.pipeline_run_start(pipeline=pipeline, trigger="admin")
    empty = services.pipeline_run_start(pipeline=other)  # no jobs: succeeded at once

    response = viewer.get(RUNS)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-status="succeeded"' in html and 'data-status="queued"' in html
    assert f'href="{change_url(pipeline)}"' in html
    assert listed(viewer) == {done, queued, empty}
    assert listed(operator, status__exact="succeeded") == {done, empty}
    assert listed(operator, trigger__exact="admin") == {queued}
    assert listed(operator, pipeline__id__exact=str(other.pk)) == {empty}
    assert listed(operator, q=str(queued.pk)[:13]) == {queued}
    assert listed(operator, q="othe") == {empty}


def test_run_changelist_queries_do_not_grow_with_the_rows(operator, django_assert_max_num_queries):
    for _ in range(3):
        services.pipeline_run_start(pipeline=PipelineFactory())
    operator.get(RUNS)
    with django_assert_max_num_queries(12) as few:
        operator.get(RUNS)
    for _ in range(20):
        services.pipeline_run_start(pipeline=PipelineFactory())
    with django_assert_max_num_queries(len(few.captured_queries)):
        operator.get(RUNS)


# -- the run's page --------------------------------------------------------------------


def test_run_page_shows_graph_jobs_env_and_outputs(viewer):
    pipeline, jobs = diamond()
    run = services.pipeline_run_start(pipeline=pipeline, env={"RELEASE": "1.2"})
    a = play(run, jobs["a"], outputs={"VERSION": "1.2.3"})
    b = play(run, jobs["b"], "failed", error="boom <script>")
    response = viewer.get(change_url(run))
    assert response.status_code == 200
    html = response.content.decode()
    states, links, edges = drawn(html)
    ia, ib, ic, id_ = ids(jobs, *"abcd")
    assert states == {ia: "succeeded", ib: "failed", ic: "running", id_: "skipped"}
    assert edges == {(ia, ib), (ia, ic), (ib, id_), (ic, id_)}
    assert links[ia] == change_url(a) and links[ib] == change_url(b)
    table = re.search(r'id="hodei-run-job-table".*?</table>', html, re.S).group(0)
    assert table.count("<tr data-job-id") == 4
    assert f'{change_url(a)}">{str(a.pk)[:13]}</a>' in table
    assert f"/admin/workermanager/execution/{a.pk}/log.txt" in table  # viewers read logs
    assert "boom &lt;script&gt;" in table and "boom <script>" not in html
    assert "VERSION" in html and "1.2.3" in html
    assert "RELEASE" in html and "1.2" in html
    assert 'id="hodei-run-live"' in html and 'data-active="1"' in html
    # No inline script (the CSP forbids it): the poller is a static file.
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert "pipelines/run-live.js" in html and "Content-Security-Policy" in response.headers


def test_run_page_is_read_only_history(operator):
    pipeline, _ = diamond()
    run = services.pipeline_run_start(pipeline=pipeline)
    html = operator.get(change_url(run)).content.decode()
    assert 'name="_save"' not in html
    assert operator.post(change_url(run), {"status": "succeeded"}).status_code == 403
    assert operator.get(RUNS + "add/").status_code == 403
    assert operator.get(f"{RUNS}{run.pk}/delete/").status_code == 403
    run.refresh_from_db()
    assert run.status == "queued"


def test_state_json_follows_the_run_until_it_finished(viewer, client):
    pipeline, jobs = diamond()
    run = services.pipeline_run_start(pipeline=pipeline)
    body = state_json(viewer, run).json()
    assert (body["status"], body["active"], body["can_cancel"], body["can_retry"]) == (
        "queued",
        True,
        True,
        False,
    )
    states, _, _ = drawn(body["graph_html"])
    assert sorted(states.values()) == ["pending", "pending", "pending", "queued"]
    assert body["jobs_html"].count("<tr data-job-id") == 4

    for name in "abc":
        play(run, jobs[name])
    body = state_json(viewer, run).json()
    assert body["status"] == "running" and body["active"] is True
    assert 'data-status="running"' in body["status_html"]
    states, _, _ = drawn(body["graph_html"])
    assert states[str(jobs["d"].pk)] == "queued"

    play(run, jobs["d"], outputs={"ARTIFACT": "d.tar"})
    body = state_json(viewer, run).json()
    assert (body["status"], body["active"], body["can_cancel"]) == ("succeeded", False, False)
    assert set(drawn(body["graph_html"])[0].values()) == {"succeeded"}
    assert "ARTIFACT" in body["outputs_html"] and "UTC" in body["finished_html"]

    anonymous = state_json(client, run)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    for pk in (uuid.uuid4(), "not-a-uuid"):
        assert viewer.get(f"{RUNS}{pk}/state.json").status_code == 404


def test_state_json_needs_the_view_permission(db):
    from tests.factories import UserFactory, logged_in

    staff = logged_in(UserFactory(is_staff=True))
    run = services.pipeline_run_start(pipeline=PipelineFactory())
    assert state_json(staff, run).status_code == 403


# -- cancel and retry ------------------------------------------------------------------


def operate(client, run, operation, **kwargs):
    return client.post(f"{RUNS}{run.pk}/operate/{operation}/", **kwargs)


def test_buttons_follow_the_state_and_the_role(operator, viewer):
    pipeline, jobs = diamond()
    active = services.pipeline_run_start(pipeline=pipeline)
    page = operator.get(change_url(active)).content.decode()
    assert '<li id="hodei-cancel-item">' in page
    assert '<li id="hodei-retry-item" hidden>' in page
    failed = services.pipeline_run_start(pipeline=pipeline)
    play(failed, jobs["a"], "failed")
    assert failed.status == "failed"
    page = operator.get(change_url(failed)).content.decode()
    assert '<li id="hodei-cancel-item" hidden>' in page
    assert '<li id="hodei-retry-item">' in page
    for run in (active, failed):
        page = viewer.get(change_url(run))
        assert page.status_code == 200
        html = page.content.decode()
        assert 'id="hodei-cancel"' not in html and 'id="hodei-retry"' not in html


def test_operator_cancels_then_retries_a_run(operator):
    pipeline, jobs = diamond()
    run = services.pipeline_run_start(pipeline=pipeline)
    response = operate(operator, run, "cancel", follow=True)
    assert response.redirect_chain[-1][0] == change_url(run)
    assert "Run cancelled." in messages_of(response)
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert set(run.executions.values_list("status", flat=True)) == {"cancelled"}

    response = operate(operator, run, "retry", follow=True)
    assert "Retrying the jobs that did not succeed." in messages_of(response)
    run.refresh_from_db()
    assert run.status == "running"
    assert attempt(run, jobs["a"]).status == "queued"
    assert 'data-active="1"' in response.content.decode()  # the page follows it again


def test_viewers_may_neither_cancel_nor_retry(viewer):
    pipeline, jobs = diamond()
    failed = services.pipeline_run_start(pipeline=pipeline)
    play(failed, jobs["a"], "failed")
    active = services.pipeline_run_start(pipeline=pipeline)
    assert operate(viewer, active, "cancel").status_code == 403
    assert operate(viewer, failed, "retry").status_code == 403
    active.refresh_from_db()
    failed.refresh_from_db()
    assert (active.status, failed.status) == ("queued", "failed")


def test_operate_is_a_post_of_a_known_operation(operator):
    run = services.pipeline_run_start(pipeline=diamond()[0])
    assert operator.get(f"{RUNS}{run.pk}/operate/cancel/").status_code == 405
    assert operate(operator, run, "delete").status_code == 404
    assert operator.post(f"{RUNS}nope/operate/cancel/").status_code == 404
    run.refresh_from_db()
    assert run.status == "queued"


def test_conflicts_become_error_messages(operator):
    pipeline, jobs = diamond()
    run = services.pipeline_run_start(pipeline=pipeline)
    for name in "abcd":
        play(run, jobs[name])
    for operation, words in (("cancel", "cannot be cancelled"), ("retry", "can be retried")):
        response = operate(operator, run, operation, follow=True)
        assert response.redirect_chain[-1][0] == change_url(run)
        [message] = response.context["messages"]
        assert words in str(message) and message.level_tag == "error"
    run.refresh_from_db()
    assert run.status == "succeeded" and run.executions.count() == 4


# -- roles -----------------------------------------------------------------------------


def test_roles_let_operators_act_on_runs_and_viewers_watch(db):
    operator, viewer = role_user(OPERATORS), role_user(VIEWERS)
    assert operator.has_perms(["pipelines.view_pipelinerun", "pipelines.change_pipelinerun", RUN])
    assert viewer.has_perm("pipelines.view_pipelinerun")
    assert not viewer.has_perm("pipelines.change_pipelinerun") and not viewer.has_perm(RUN)
    for name in (OPERATORS, VIEWERS):
        codenames = set(Group.objects.get(name=name).permissions.values_list("codename", flat=True))
        assert not {"add_pipelinerun", "delete_pipelinerun"} & codenames
