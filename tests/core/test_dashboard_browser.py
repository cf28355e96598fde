"""The dashboard in a real headless Chromium (Debian's `chromium` + `chromium-driver`, driven by Selenium with the
system binaries: Selenium Manager never downloads anything) against the whole app on the local stack.

A tenant types its key, submits a job from the page and watches its progress bar reach 100 %, sees its error codes
and duplicate groups, replays a dead-lettered chunk and cancels a job through the buttons; the operator view shows
lane depths, unfinished jobs of every tenant and the throughput. Screenshots go to test-artifacts/dashboard/, and
with UPDATE_DOCS_SCREENSHOTS=1 also to the README's docs/dashboard.png and docs/dashboard-operator.png (a plain
test run leaves the checkout as it found it).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import ROOT
from shared.config import MANIFESTS_CONTAINER
from shared.services.context import AppContext
from tests.core.conftest import OPERATOR_KEY, Api, ApiTenant, poison_job
from tests.core.image_server import ImageServer

pytestmark = [pytest.mark.stack, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
DOCS = ROOT / "docs"
WIDTH = 1280

TERMINAL = ("succeeded", "completed_with_errors", "failed", "cancelled")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(
            f"the browser test needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): "
            "./devstack/test installs them (as root), or run: apt-get install chromium chromium-driver"
        )
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not look for (or fetch) a driver or a browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # running as root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={WIDTH},900",
        "--force-device-scale-factor=1",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--lang=en-GB",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    service = Service(
        executable_path=str(CHROMEDRIVER),
        service_args=["--log-level=WARNING"],
        log_output=str(ARTIFACTS / "chromedriver.log"),
    )
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The dashboard as a person sees it, through the DOM."""

    def __init__(self, driver: Any, base_url: str) -> None:
        self.driver = driver
        self.url = f"{base_url}/api/dashboard/"

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait(self, what: str, condition: Callable[[], Any], timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.2)
        self.shot(f"timeout-{what.replace(' ', '-')[:40]}")
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; message: {self.message()!r}")

    def type(self, element_id: str, text: str) -> None:
        element = self.driver.find_element("id", element_id)
        element.clear()
        if len(text) > 200:  # typing thousands of characters key by key is slow; set it as a paste would
            self.js("arguments[0].value = arguments[1];", element, text)
        else:
            element.send_keys(text)

    def click(self, selector: str) -> None:
        self.driver.find_element("css selector", selector).click()

    def message(self) -> str:
        return str(self.js("const m = document.getElementById('message'); return m.hidden ? '' : m.textContent;"))

    def card(self, job_id: str) -> dict[str, Any] | None:
        """What the job's card shows, or None while it is not on the page."""
        result: dict[str, Any] | None = self.js(
            """
            const card = document.querySelector(`article[data-job-id="${arguments[0]}"]`);
            if (!card) return null;
            const q = (s) => card.querySelector(s);
            const visible = (el) => !!el && !el.hidden;
            return {
              state: card.dataset.state,
              percent: Number(q('.progress').getAttribute('aria-valuenow')),
              text: card.innerText,
              errors: [...card.querySelectorAll('.codes li')].map((li) => li.dataset.code),
              duplicates: q('.duplicates .summary').textContent,
              groups: card.querySelectorAll('.duplicates .groups li').length,
              dead: [...card.querySelectorAll('.dead-letters tbody tr')].map(
                (tr) => ({chunk: Number(tr.dataset.chunk), replayed: tr.dataset.replayed === 'true'})),
              replay: visible(q('button[data-action=replay]')) && !q('button[data-action=replay]').disabled,
              cancel: visible(q('button[data-action=cancel]')) && !q('button[data-action=cancel]').disabled,
              chartPoints: Number(q('svg.chart').dataset.points || 0),
            };
            """,
            job_id,
        )
        return result

    def card_when(self, job_id: str, what: str, test: Callable[[dict[str, Any]], bool], timeout: float = 90) -> Any:
        def check() -> dict[str, Any] | None:
            card = self.card(job_id)
            return card if card is not None and test(card) else None

        return self.wait(f"job {job_id} {what}", check, timeout)

    def follow(self, job_id: str) -> None:
        self.type("track-id", job_id)
        self.click("#track-button")

    def shot(self, name: str, full_page: bool = False) -> Path:
        path = ARTIFACTS / f"{name}.png"
        if full_page:  # the viewport made as tall as the page, through the DevTools protocol
            height = int(self.js("return document.documentElement.scrollHeight;"))
            self.driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )
            time.sleep(0.3)
        try:
            self.driver.save_screenshot(str(path))
        finally:
            if full_page:
                self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        return path

    def console_problems(self) -> list[str]:
        """Script errors and policy violations the browser logged (failed requests the page handles are not)."""
        entries = self.driver.get_log("browser")
        return [
            e["message"]
            for e in entries
            if e["level"] == "SEVERE" and ("Content Security Policy" in e["message"] or "Uncaught" in e["message"])
        ]


def _publish(shot: Path, name: str) -> None:
    """The README's screenshots are remade by a test run only when asked (UPDATE_DOCS_SCREENSHOTS=1)."""
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        shutil.copyfile(shot, DOCS / name)


def test_a_tenant_follows_jobs_replays_and_cancels_in_the_browser(
    browser: Any, app_host: Api, app_context: AppContext, make_tenant: Any, image_server: ImageServer
) -> None:
    tenant: ApiTenant = make_tenant("new")
    page = Page(browser, app_host.base_url)
    browser.get(page.url.rstrip("/"))  # without the slash: redirected to the page
    page.wait("the page", lambda: browser.current_url.endswith("/api/dashboard/") and page.js(
        "return !!document.getElementById('tenant-key-form');"))
    assert page.js("return document.getElementById('tenant-area').hidden;") is True

    page.type("tenant-key", tenant.key)
    page.click("#tenant-key-form button[type=submit]")
    page.wait("the tenant area", lambda: page.js("return !document.getElementById('tenant-area').hidden;"))
    assert page.js("return sessionStorage.getItem('imagepipe.tenantKey');") == tenant.key
    assert page.js("return localStorage.length;") == 0, "the key must not outlive the tab"

    # 1. A job submitted from the page: 60 images, 2 missing and 2 corrupt; 16 distinct pictures, so duplicates.
    def url(i: int) -> str:
        if i in (7, 31):
            return image_server.url(f"/missing/{i}.jpg")
        if i in (13, 44):
            return image_server.url(f"/corrupt/{i}.jpg")
        return image_server.url(f"/slow/40/{i}.jpg")

    page.type("submit-urls", "\n".join(url(i) for i in range(60)))
    page.click("#submit-button")
    job_id = page.wait("the job's acceptance", lambda: page.js(
        "const m = document.getElementById('message').textContent.match(/^Job (\\w+) accepted/); return m && m[1];"))
    seen: set[float] = set()

    def finished(card: dict[str, Any]) -> bool:
        seen.add(card["percent"])
        return card["state"] in TERMINAL

    card = page.card_when(job_id, "finished", finished, timeout=120)
    code, _, status = app_host.call("GET", f"/jobs/{job_id}", tenant.key)
    assert code == 200 and status["state"] == "completed_with_errors", status
    assert card["state"] == "completed_with_errors" and card["percent"] == 100, card
    assert status["counts"] == {"succeeded": 56, "failed": 4, "skipped": 0}
    assert sorted(card["errors"]) == sorted(status["errors"]) and sum(status["errors"].values()) == 4
    assert card["chartPoints"] >= 2, "images/s over time needs samples"
    page.shot("1-job-finished")
    print(f"progress values seen on the page: {sorted(seen)}")

    card = page.card_when(job_id, "duplicate groups", lambda c: bool(re.match(r"\d+ duplicate group", c["duplicates"])))
    _, _, status = app_host.call("GET", f"/jobs/{job_id}", tenant.key)
    assert status["duplicates"]["state"] == "ready" and status["duplicates"]["groups"] > 0, status
    assert card["duplicates"].startswith(f"{status['duplicates']['groups']} duplicate group"), card
    page.click(f'article[data-job-id="{job_id}"] button[data-action=duplicates]')
    page.card_when(job_id, "its groups listed", lambda c: c["groups"] == min(20, status["duplicates"]["groups"]))

    # 2. A dead-lettered chunk, replayed with the button.
    dead_job, manifest, lines = poison_job(app_context, tenant, image_server)
    page.follow(dead_job)
    card = page.card_when(dead_job, "dead-lettered", lambda c: c["state"] == "failed" and c["dead"], timeout=120)
    assert card["dead"] == [{"chunk": 0, "replayed": False}] and card["replay"], card
    page.shot("2-dead-lettered")
    app_context.blobs.write(MANIFESTS_CONTAINER, manifest, lines, "text/plain")
    page.click(f'article[data-job-id="{dead_job}"] button[data-action=replay]')
    page.wait("the replay's answer", lambda: "re-sent 1 dead-lettered chunk" in page.message())
    card = page.card_when(dead_job, "replayed and succeeded", lambda c: c["state"] == "succeeded", timeout=90)
    assert card["percent"] == 100 and card["dead"] == [{"chunk": 0, "replayed": True}] and not card["replay"], card
    _, _, status = app_host.call("GET", f"/jobs/{dead_job}", tenant.key)
    assert status["counts"] == {"succeeded": 3, "failed": 0, "skipped": 0}, status

    # 3. A job submitted through the API (so the page learns of it from GET /api/jobs), cancelled with the button
    # once it is under way.
    code, _, accepted = app_host.call(
        "POST",
        "/jobs",
        tenant.key,
        {"urls": [image_server.url(f"/slow/80/{i}.jpg") for i in range(400)], "options": {"analyses": ["exif"]}},
    )
    assert code == 202, accepted
    slow_job = accepted["job_id"]  # not followed: the page finds it in the tenant's job list
    page.card_when(slow_job, "under way", lambda c: 0 < c["percent"] < 100 and c["cancel"], timeout=90)
    page.shot("3-running")
    page.click(f'article[data-job-id="{slow_job}"] button[data-action=cancel]')
    card = page.card_when(slow_job, "cancelled", lambda c: c["state"] == "cancelled", timeout=120)
    assert not card["cancel"], "a finished job has no cancel button"
    _, _, status = app_host.call("GET", f"/jobs/{slow_job}", tenant.key)
    assert status["state"] == "cancelled" and status["counts"]["skipped"] > 0, status

    assert page.js("return document.getElementById('jobs-source').textContent;").startswith("newest")
    page.js("window.scrollTo(0, 0);")
    shot = page.shot("4-tenant-view", full_page=True)
    _publish(shot, "dashboard.png")
    assert page.console_problems() == []


def test_the_operator_view_shows_lanes_active_jobs_and_throughput(
    browser: Any, app_host: Api, make_tenant: Any, image_server: ImageServer
) -> None:
    page = Page(browser, app_host.base_url)
    browser.get(page.url + "#operator")
    page.wait("the operator tab", lambda: page.js("return !document.getElementById('view-operator').hidden;"))

    page.type("operator-key", "not-the-key")
    page.click("#operator-key-form button[type=submit]")
    page.wait("the refusal", lambda: "invalid_operator_key" in page.message())

    # Another tenant's job under way, so the view has something active across tenants.
    tenant: ApiTenant = make_tenant("free")
    code, _, accepted = app_host.call(
        "POST",
        "/jobs",
        tenant.key,
        {"urls": [image_server.url(f"/slow/100/{i}.jpg") for i in range(300)], "options": {"analyses": ["exif"]}},
    )
    assert code == 202, accepted
    job_id = accepted["job_id"]
    try:
        page.type("operator-key", OPERATOR_KEY)
        page.click("#operator-key-form button[type=submit]")
        page.wait("the overview", lambda: page.js("return !document.getElementById('operator-area').hidden;"))
        row = page.wait(
            "the active job",
            lambda: page.js(
                """
                const tr = document.querySelector(`#op-jobs tr[data-job-id="${arguments[0]}"]`);
                return tr && {text: tr.innerText, percent: Number(tr.querySelector('.progress')
                  .getAttribute('aria-valuenow'))};
                """,
                job_id,
            ),
            timeout=60,
        )
        assert tenant.tenant_id in row["text"] and "bulk" in row["text"], row
        lanes = page.js(
            "return [...document.querySelectorAll('#op-lanes tbody tr')].map((tr) => tr.dataset.lane);"
        )
        assert lanes == ["high", "standard", "bulk"]
        page.wait("throughput from the earlier jobs", lambda: int(page.js(
            "return Number(document.getElementById('op-images').textContent) || 0;")) > 0)
        page.wait("some progress", lambda: page.js(
            "const tr = document.querySelector(`#op-jobs tr[data-job-id=\"${arguments[0]}\"]`);"
            "return tr && Number(tr.querySelector('.progress').getAttribute('aria-valuenow')) > 0;", job_id),
            timeout=60)
        assert page.js("return document.getElementById('op-timer').textContent;").startswith("Status timer last ran")
        shot = page.shot("5-operator-view", full_page=True)
        _publish(shot, "dashboard-operator.png")
        assert page.console_problems() == []
    finally:
        app_host.call("DELETE", f"/jobs/{job_id}", tenant.key)
