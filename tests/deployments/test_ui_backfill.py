"""A backfill launched from the Prefect UI in headless Chromium, as a user would.

``eowatch deploy`` runs as a real subprocess against a real Prefect server; Playwright drives Debian's
Chromium (``/usr/bin/chromium``; nothing is downloaded) through the backfill deployment's page: Run →
Custom run, the form filled with custom values, Submit. The test then follows the runs through the
Prefect API until the backfill and its monitor subflow runs complete, checks the change cubes, and saves
screenshots of the filled form and of the finished run (to docs/img/ for the README when
EOWATCH_UPDATE_SCREENSHOTS=1, else to the test folder).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.deployments.conftest import REPO, eowatch_exe, write_regions

pytestmark = [pytest.mark.services, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IMG = REPO / "docs" / "img"
START, END, WINDOW_MONTHS = dt.date(2026, 4, 1), dt.date(2026, 6, 30), 2
WINDOWS = ["2026-04-01_2026-05-31", "2026-05-01_2026-06-30"]
MODEL = "siamese-s2s1-change"
TIMEOUT_S = 420
SUBMIT_TIMEOUT_S = 120


def _browser_or_skip() -> Any:
    """Playwright's sync API, or skip (fail under CI) when the browser or Playwright is missing."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install -y chromium; `make test` installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("playwright (pip install -e '.[dev]')")
    if missing:
        reason = "the UI test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return sync_playwright


def _fill_form(page: Any, region: str, out_root: Path) -> None:
    """Fill the custom-run form of the backfill deployment like a user: pickers, drop-downs, text."""
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run", exact=True).click()
    page.get_by_text("Parameters", exact=True).wait_for()

    def field(title: str) -> Any:
        label = page.locator(".schema-form-property__label", has_text=title)
        return page.locator(".schema-form-property").filter(has=label).first

    def choose(title: str, option: str) -> None:
        field(title).locator("button.p-select-button__control").focus()
        page.keyboard.press("ArrowDown")  # opens the drop-down (a mouse click toggles it twice)
        page.get_by_role("option", name=option, exact=True).click()

    def pick_date(title: str, day: dt.date) -> None:
        field(title).get_by_text("Select date").click()
        page.locator(".p-date-picker input[type=date]").fill(day.isoformat())
        page.get_by_role("button", name="Apply", exact=True).click()

    choose("Region", region)
    pick_date("Start date", START)
    pick_date("End date", END)
    field("Output root folder").locator("textarea, input").first.fill(str(out_root))
    field("Months per window").locator("input").first.fill(str(WINDOW_MONTHS))
    field("Windows at a time").locator("input").first.fill("1")
    choose("Change model", MODEL)


def _screenshot_form(page: Any, path: Path) -> None:
    """The filled form, from the run name down to the header of the Dask cluster section."""
    page.set_viewport_size({"width": 1100, "height": 2600})  # the whole form, drawn at once
    form = page.locator("form").bounding_box()
    cluster = page.locator(".schema-form-property__label", has_text="Dask cluster").bounding_box()
    bottom = cluster["y"] + cluster["height"] + 40
    page.screenshot(path=str(path), clip={**form, "height": bottom - form["y"]})
    page.set_viewport_size({"width": 1280, "height": 900})


def _flow_runs(deployment_id: str) -> tuple[list[Any], list[Any]]:
    """The deployment's flow runs and the subflow runs of the first of them (sync client: Playwright's
    sync API already runs an event loop in this thread)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )
        if not runs:
            return [], []
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[runs[0].id]))
        )
        return runs, children


def _wait_submitted(page: Any, deployment_id: str, picture: Path) -> None:
    """Wait until the submitted form has created the deployment's flow run.

    The UI validates the form with the server before it creates the run; on a loaded 2-core CI machine
    that once took longer than Playwright's 30 s default. The run is looked for through the API, and a
    form that never turns into a run fails with the page's address, its text and a screenshot."""
    deadline = time.monotonic() + SUBMIT_TIMEOUT_S
    while time.monotonic() < deadline:
        if _flow_runs(deployment_id)[0]:
            return
        page.wait_for_timeout(1000)
    page.screenshot(path=str(picture), full_page=True)
    text = page.locator("body").inner_text()
    pytest.fail(
        f"no flow run {SUBMIT_TIMEOUT_S} s after Submit; the page is {page.url} ({picture}):\n{text[-3000:]}"
    )


def _wait_completed(deployment_id: str, log: Path) -> tuple[Any, list[Any]]:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        runs, children = _flow_runs(deployment_id)
        if runs and runs[0].state is not None and runs[0].state.is_final():
            return runs[0], children
        time.sleep(2)
    pytest.fail(f"the backfill did not finish in {TIMEOUT_S} s:\n{log.read_text()[-4000:]}")


def _assert_form_is_enforced(deployment_id: str, out_root: Path) -> None:
    """The server refuses runs whose parameters are outside the form: an unknown region, 1-month windows."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    base = {"region": "small", "start": START.isoformat(), "end": END.isoformat(), "out_root": str(out_root)}
    refused = [
        ({"region": "nowhere"}, r"'nowhere' is not one of \['small'\]"),
        ({"window_months": 1}, "1 is less than the minimum of 2"),
    ]
    with get_client(sync_client=True) as client:
        for change, message in refused:
            with pytest.raises(PrefectHTTPStatusError, match=message):
                client.create_flow_run_from_deployment(deployment_id, parameters={**base, **change})


def test_backfill_from_the_ui(
    served_small_archive: Any, ui_prefect_server: Any, serve_process: Any, tmp_path: Path
) -> None:
    sync_playwright = _browser_or_skip()
    regions = write_regions(tmp_path / "regions.yaml", served_small_archive.manifest, "small", None)
    default_out, out_root = tmp_path / "default-out", tmp_path / "ui-out"
    env = {
        **ui_prefect_server.env(),
        "EOWATCH_STAC_URL": served_small_archive.stac_url,
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "PREFECT_LOGGING_LEVEL": "INFO",  # the run's logs show in the screenshot of the run
    }
    argv = [eowatch_exe(), "deploy", "--regions-file", str(regions), "--out-root", str(default_out)]
    served = serve_process([*argv, "--workers", "1"], env, expect=1)
    url = served.urls["backfill/on-demand"]
    deployment_id = url.rsplit("/", 1)[1]

    # The README's pictures are refreshed on request only, so a test run never dirties the checkout.
    img = IMG if os.environ.get("EOWATCH_UPDATE_SCREENSHOTS") == "1" else tmp_path / "img"
    img.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            _fill_form(page, "small", out_root)
            _screenshot_form(page, img / "ui-backfill-form.png")
            page.get_by_role("button", name="Submit", exact=True).click()
            _wait_submitted(page, deployment_id, tmp_path / "after-submit.png")
            page.wait_for_url(url + "?tab=Runs", timeout=SUBMIT_TIMEOUT_S * 1000)  # back to the runs
            run, children = _wait_completed(deployment_id, served.log)
            assert run.state.is_completed(), (
                f"{run.state.name}: {run.state.message}\n{served.log.read_text()}"
            )
            assert run.parameters["region"] == "small"
            assert run.parameters["out_root"] == str(out_root)
            assert (run.parameters["start"], run.parameters["end"]) == (START.isoformat(), END.isoformat())
            assert run.parameters["window_months"] == WINDOW_MONTHS
            assert run.parameters["model"] == MODEL
            assert sorted(c.name for c in children) == [f"monitor-small-{w}" for w in WINDOWS]
            assert all(c.state is not None and c.state.is_completed() for c in children)
            page.goto(f"{ui_prefect_server.ui_url}/runs/flow-run/{run.id}")
            page.get_by_text("Completed").first.wait_for()
            page.wait_for_timeout(3000)  # the run graph draws its nodes after the page settles
            page.screenshot(path=str(img / "ui-backfill-run.png"))
        finally:
            browser.close()

    _assert_form_is_enforced(deployment_id, out_root)
    for window in WINDOWS:
        change = out_root / "small" / window / "change.zarr"
        attrs = json.loads((change / "zarr.json").read_text())["attributes"]
        assert attrs["eowatch_status"] == "complete", window
    assert not default_out.exists()  # the form's output root was used, not the deployment's default
    shutil.rmtree(out_root)
