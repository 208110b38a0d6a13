"""The operator's path through the admin in headless Chromium (Debian's package), with a
real agent running the job. Screenshots land in artifacts/."""

import shutil
from pathlib import Path

import pytest

from tests.factories import UserFactory
from tests.processes import ROOT, start_agent, stop

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
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(2)
    yield driver
    driver.quit()


def test_operator_creates_runs_and_watches_a_job(live_server, browser, child_env):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    ARTIFACTS.mkdir(exist_ok=True)
    admin = UserFactory(username="operator", is_staff=True, is_superuser=True)
    admin.set_password("correct horse battery")
    admin.save()
    agent = start_agent(child_env, name="browser-agent")
    wait = WebDriverWait(browser, 20)
    try:
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
            "echo hello from the browser; sleep 1; echo done"
        )
        browser.find_element(By.NAME, "_save").click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".messagelist .success")))

        # From the job's page, "Run now" opens the new execution's page.
        browser.get(f"{live_server.url}/admin/orchestrator/job/")
        browser.find_element(By.LINK_TEXT, "hello-job").click()
        browser.find_element(By.ID, "hodei-run-now").click()
        wait.until(ec.presence_of_element_located((By.ID, "hodei-log")))

        # The detail page follows the execution live, without a reload.
        wait.until(
            lambda d: (
                d.find_element(By.CSS_SELECTOR, ".field-status_badge .hodei-badge").text
                == "succeeded"
            )
        )
        wait.until(lambda d: "done" in d.find_element(By.ID, "hodei-log").text)
        log_text = browser.find_element(By.ID, "hodei-log").text
        assert "hello from the browser" in log_text
        browser.save_screenshot(str(ARTIFACTS / "admin-execution.png"))

        browser.get(f"{live_server.url}/admin/")
        dashboard = browser.find_element(By.CSS_SELECTOR, ".hodei-dashboard")
        assert "succeeded 1" in dashboard.text
        assert browser.find_elements(By.CSS_SELECTOR, ".hodei-chart svg rect")
        browser.save_screenshot(str(ARTIFACTS / "admin-dashboard.png"))
    finally:
        stop(agent)
    assert (ARTIFACTS / "admin-dashboard.png").stat().st_size > 10_000
