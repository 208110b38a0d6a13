"""The operator's path through the admin in headless Chromium (Debian's package), with a
real agent running the job. Screenshots land in artifacts/."""

import shutil
from pathlib import Path

import pytest

from orchestrator.models import Job
from scheduler import services
from tests.factories import UserFactory
from tests.processes import ROOT, start_agent, stop
from workermanager.services import execution_enqueue

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = ROOT / "artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not (Path(CHROMIUM).exists() and shutil.which(CHROMEDRIVER)),
        reason="needs Debian's chromium and chromium-driver",
    ),
]


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,900",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(2)
    yield driver
    driver.quit()


def fits(browser) -> bool:
    """No horizontal overflow: neither the page nor the changelist's table is wider than
    its room (the admin hides a table's overflow, cutting its last columns off)."""
    return browser.execute_script(
        """
        const page = document.documentElement.scrollWidth <= window.innerWidth;
        const table = document.getElementById("result_list");
        if (!table) return page;
        const room = table.parentElement.clientWidth;
        return page && table.scrollWidth <= room + 1;
        """
    )


def test_operator_creates_runs_and_watches_a_job(live_server, browser, child_env):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    ARTIFACTS.mkdir(exist_ok=True)
    admin = UserFactory(username="operator", is_staff=True, is_superuser=True)
    admin.set_password("correct horse battery")
    admin.save()
    wait = WebDriverWait(browser, 20)

    def shot(name: str) -> None:
        browser.save_screenshot(str(ARTIFACTS / f"admin-{name}.png"))

    browser.get(f"{live_server.url}/")
    assert "Open the admin console" in browser.page_source
    shot("landing")
    browser.get(f"{live_server.url}/admin/login/")
    browser.find_element(By.NAME, "username").send_keys("operator")
    browser.find_element(By.NAME, "password").send_keys("correct horse battery")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".hodei-dashboard")))

    # A pipeline with one job, created in one form.
    browser.get(f"{live_server.url}/admin/orchestrator/pipeline/add/")
    browser.find_element(By.NAME, "name").send_keys("browser-pipeline")
    browser.find_element(By.NAME, "jobs-0-name").send_keys("hello-job")
    browser.find_element(By.NAME, "jobs-0-command").send_keys(
        "echo hello from the browser; sleep 2; echo needle in the log; echo done"
    )
    browser.find_element(By.NAME, "_save").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".messagelist .success")))
    job = Job.objects.get(name="hello-job")
    schedule = services.schedule_create(job=job, cron="*/5 * * * *", timezone="Europe/Madrid")

    # From the job's page, "Run now" opens the new execution's page, queued: no agent yet.
    browser.get(f"{live_server.url}/admin/orchestrator/job/{job.pk}/change/")
    shot("job")
    browser.find_element(By.ID, "hodei-run-now").click()
    wait.until(ec.presence_of_element_located((By.ID, "hodei-log")))
    browser.execute_script("window.hodeiNotReloaded = true;")

    def field(name: str) -> str:
        return browser.find_element(By.CSS_SELECTOR, f".field-{name} .readonly").text

    assert field("status_badge") == "queued"
    assert field("worker_link") in ("-", "–") and field("started") in ("-", "–")
    assert browser.find_element(By.ID, "hodei-cancel").is_displayed()
    assert not browser.find_element(By.ID, "hodei-retry").is_displayed()

    agent = start_agent(child_env, name="browser-agent")
    try:
        # Everything that changes updates in place, without a reload.
        wait.until(lambda d: field("status_badge") == "running")
        wait.until(lambda d: "browser-agent" in field("worker_link"))
        assert "UTC" in field("started")
        wait.until(lambda d: field("status_badge") == "succeeded")
        wait.until(lambda d: "UTC" in field("finished"))
        wait.until(lambda d: d.find_element(By.ID, "hodei-retry").is_displayed())
        assert not browser.find_element(By.ID, "hodei-cancel").is_displayed()
        assert field("exit_code") == "0"
        wait.until(lambda d: "done" in d.find_element(By.ID, "hodei-log").text)
        assert browser.execute_script("return window.hodeiNotReloaded === true;")
    finally:
        stop(agent)

    # The log: line numbers, timestamps on demand, a search that keeps matching lines.
    log = browser.find_element(By.ID, "hodei-log")
    assert log.find_elements(By.CSS_SELECTOR, ".line .ln")[0].text == "1"
    browser.find_element(By.ID, "hodei-log-times").click()
    assert log.find_elements(By.CSS_SELECTOR, ".line .ts")[0].is_displayed()
    browser.find_element(By.ID, "hodei-log-search").send_keys("needle")
    wait.until(lambda d: d.find_element(By.ID, "hodei-log-matches").text == "1 matching lines")
    visible = [
        line.text for line in log.find_elements(By.CSS_SELECTOR, ".line") if line.is_displayed()
    ]
    assert len(visible) == 1 and "needle in the log" in visible[0]
    link = browser.find_element(By.ID, "hodei-log-download").get_attribute("href")
    assert link.endswith("/log.txt")
    shot("execution")

    # The main lists fit a 1400 px wide screen.
    for _ in range(3):
        execution_enqueue(command="echo " + "a-rather-long-command-line " * 12)
    for name, url in [
        ("executions", "/admin/workermanager/execution/"),
        ("schedules", "/admin/scheduler/schedule/"),
        ("workers", "/admin/workermanager/worker/"),
        ("jobs", "/admin/orchestrator/job/"),
        ("pipelines", "/admin/orchestrator/pipeline/"),
    ]:
        browser.get(live_server.url + url)
        wait.until(ec.presence_of_element_located((By.ID, "result_list")))
        assert fits(browser), f"{name} overflows at 1400 px"
        shot(name)
    browser.get(f"{live_server.url}/admin/scheduler/schedule/{schedule.pk}/change/")
    wait.until(lambda d: "UTC" in d.find_element(By.ID, "hodei-preview").text)
    assert "CET" in browser.find_element(By.ID, "hodei-preview").text
    shot("schedule")

    browser.get(f"{live_server.url}/admin/")
    dashboard = browser.find_element(By.CSS_SELECTOR, ".hodei-dashboard")
    assert "succeeded 1" in dashboard.text
    assert browser.find_elements(By.CSS_SELECTOR, ".hodei-chart svg rect")
    shot("dashboard")
    assert (ARTIFACTS / "admin-dashboard.png").stat().st_size > 10_000
