"""A pipeline run watched in headless Chromium (Debian's package): an operator presses
"Run pipeline" on a diamond pipeline and watches its graph turn green on the run's page,
without a reload, while a real agent runs the jobs. Screenshots land in artifacts/."""

import shutil
import time
from pathlib import Path

import pytest

from accounts.roles import OPERATORS
from pipelines.models import PipelineRun

# The admin's browser test's Chromium (its fixture), and its overflow check.
from tests.browser.test_admin_browser import (  # noqa: F401 (browser: a fixture)
    ARTIFACTS,
    CHROMEDRIVER,
    CHROMIUM,
    browser,
    fits,
)
from tests.factories import JobFactory, PipelineFactory, role_user
from tests.processes import start_agent, stop

pytestmark = [
    pytest.mark.browser,
    # The agent is a process of its own: it needs a database the live server shares.
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not (Path(CHROMIUM).exists() and shutil.which(CHROMEDRIVER)),
        reason="needs Debian's chromium and chromium-driver",
    ),
]

PASSWORD = "correct horse battery"
NODE_STATES = """
return Array.from(document.querySelectorAll(arguments[0] + ' .hodei-dag-node'))
  .map(g => g.getAttribute('data-state'));
"""
STATE_REQUESTS = """
return performance.getEntriesByType('resource')
  .filter(e => e.name.includes('/state.json')).length;
"""


def diamond():
    pipeline = PipelineFactory(name="browser-diamond")
    commands = {
        "a": "echo preparing; sleep 0.5",
        "b": 'sleep 0.6; echo "VERSION=1.2.3" >> "$HODEI_OUTPUT"',
        "c": "sleep 0.6; echo testing",
        # Long enough to be seen running after the others succeeded (the page polls each s).
        "d": 'echo "shipping $VERSION"; sleep 1.5',
    }
    jobs = {
        n: JobFactory(pipeline=pipeline, name=f"{n}-job", command=c) for n, c in commands.items()
    }
    jobs["b"].depends_on.set([jobs["a"]])
    jobs["c"].depends_on.set([jobs["a"]])
    jobs["d"].depends_on.set([jobs["b"], jobs["c"]])
    return pipeline, jobs


def test_operator_runs_a_pipeline_and_watches_its_graph_live(
    live_server,
    browser,  # noqa: F811
    child_env,
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    ARTIFACTS.mkdir(exist_ok=True)
    operator = role_user(OPERATORS, username="pipeline-operator")
    operator.set_password(PASSWORD)
    operator.save()
    pipeline, jobs = diamond()
    wait = WebDriverWait(browser, 30, poll_frequency=0.1)

    def shot(name: str) -> None:
        browser.save_screenshot(str(ARTIFACTS / f"admin-{name}.png"))

    def states(where: str) -> list[str]:
        return browser.execute_script(NODE_STATES, where)

    def field(name: str) -> str:
        return browser.find_element(By.CSS_SELECTOR, f".fieldBox.field-{name} .readonly").text

    browser.get(f"{live_server.url}/admin/login/")
    browser.find_element(By.NAME, "username").send_keys("pipeline-operator")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".hodei-dashboard")))

    # The pipeline's page: four grey nodes, four arrows, each node a link to its job.
    browser.get(f"{live_server.url}/admin/orchestrator/pipeline/{pipeline.pk}/change/")
    assert states("#hodei-pipeline-graph") == ["", "", "", ""]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#hodei-pipeline-graph .hodei-dag-edge")) == 4
    links = browser.find_elements(By.CSS_SELECTOR, "#hodei-pipeline-graph .hodei-dag-node a")
    assert {link.get_dom_attribute("href").split("/")[-3] for link in links} == {
        str(j.pk) for j in jobs.values()
    }
    shot("pipeline-never-run")
    assert fits(browser), browser.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth];"
    )

    # "Run pipeline" opens the new run's page; no agent yet, so nothing moves.
    browser.find_element(By.ID, "hodei-run-pipeline").click()
    wait.until(ec.presence_of_element_located((By.ID, "hodei-run-graph")))
    run = PipelineRun.objects.get()
    assert browser.current_url.endswith(f"/admin/pipelines/pipelinerun/{run.pk}/change/")
    assert run.trigger == "admin"
    browser.execute_script("window.hodeiNotReloaded = true;")
    created = field("when_created")
    assert sorted(states("#hodei-run-graph")) == ["pending", "pending", "pending", "queued"]
    assert field("status_badge") == "queued"
    assert browser.find_element(By.ID, "hodei-cancel").is_displayed()
    assert not browser.find_element(By.ID, "hodei-retry").is_displayed()

    agent = start_agent(child_env, name="pipeline-browser-agent", concurrency=2)
    seen: list[tuple[str, ...]] = []
    shot_live = False
    try:

        def all_green(driver) -> bool:
            nonlocal shot_live
            now = tuple(states("#hodei-run-graph"))
            if not seen or seen[-1] != now:
                seen.append(now)
            if "running" in now and "succeeded" in now and not shot_live:
                shot("pipeline-run-live")
                shot_live = True
            return now == ("succeeded",) * 4

        wait.until(all_green)
        wait.until(lambda d: field("status_badge") == "succeeded")
    finally:
        stop(agent)

    # Every change arrived in place: the page was never reloaded, and it showed the
    # run on its way (some jobs done while others ran), not only its end.
    assert browser.execute_script("return window.hodeiNotReloaded === true;")
    assert any("running" in s and "succeeded" in s for s in seen), seen
    assert "UTC" in field("when_started") and "UTC" in field("when_finished")
    assert field("when_created").split(" UTC")[0] == created.split(" UTC")[0]
    assert field("duration").endswith(" ms")
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-run-status") == (
        "succeeded"
    )
    assert not browser.find_element(By.ID, "hodei-cancel").is_displayed()
    assert not browser.find_element(By.ID, "hodei-retry").is_displayed()
    rows = browser.find_elements(By.CSS_SELECTOR, "#hodei-run-job-table tbody tr")
    assert [r.get_attribute("data-state") for r in rows] == ["succeeded"] * 4
    assert "1.2.3" in browser.find_element(By.ID, "hodei-run-outputs").text

    # It stopped asking once the run had finished.
    asked = browser.execute_script(STATE_REQUESTS)
    time.sleep(2.5)
    assert browser.execute_script(STATE_REQUESTS) == asked
    assert fits(browser)
    shot("pipeline-run")
    browser.execute_script("document.getElementById('hodei-run-jobs').scrollIntoView();")
    shot("pipeline-run-jobs")

    # A node leads to its execution, where its log is.
    browser.find_element(By.CSS_SELECTOR, "#hodei-run-graph .hodei-dag-node a").click()
    wait.until(ec.presence_of_element_located((By.ID, "hodei-log")))
    assert "/admin/workermanager/execution/" in browser.current_url

    # Back on the pipeline's page, the graph has the latest run's colours.
    browser.get(f"{live_server.url}/admin/orchestrator/pipeline/{pipeline.pk}/change/")
    assert states("#hodei-pipeline-graph") == ["succeeded"] * 4
    shot("pipeline")
    browser.get(f"{live_server.url}/admin/pipelines/pipelinerun/")
    wait.until(ec.presence_of_element_located((By.ID, "result_list")))
    assert fits(browser), "the runs list overflows at 1400 px"
    shot("pipeline-runs")
