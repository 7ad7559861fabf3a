"""Browser tests: the real dashboard (streamlit run, sandbox mounted) driven by Playwright in Debian's chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port

# The README's pictures: `make screenshots` writes them there; other runs write them under the temporary directory,
# so that a test run does not rewrite tracked files with pixels that differ by noise alone.
SCREENSHOTS = (ROOT / "docs" / "screenshots" if os.environ.get("UPDATE_SCREENSHOTS")
               else Path(tempfile.gettempdir()) / "pica-dashboard-screenshots")
GRANT_KEY = "e2e-grant-signing-key-of-32-characters-at-least"  # the dashboard under test signs AuthKit grants with it
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class Dashboard:
    def __init__(self, url: str, database_url: str, log: Path) -> None:
        self.url = url
        self.database_url = database_url
        self.log = log

    @property
    def sandbox_url(self) -> str:
        return f"{self.url}/sandbox"

    def pica(self, path: str, **params) -> dict:
        """GET from the mounted sandbox's Pica API."""
        response = httpx.get(f"{self.sandbox_url}{path}", params=params, headers={"x-pica-secret": "sk_test_sandbox"},
                             timeout=10)
        response.raise_for_status()
        return response.json()

    def query(self, sql: str, *params) -> list[tuple]:
        """Read the dashboard's own database."""
        import sqlite3

        with sqlite3.connect(self.database_url.removeprefix("sqlite:///")) as db:
            return db.execute(sql, params).fetchall()

    def control(self, method: str, path: str, **kwargs) -> httpx.Response:
        response = httpx.request(method, f"{self.sandbox_url}/control/{path}",
                                 headers={"x-pica-secret": "sk_test_sandbox"}, timeout=10, **kwargs)
        response.raise_for_status()
        return response


@contextmanager
def streamlit_server(script: str, env: dict[str, str], log: Path):
    """`streamlit run <script>` (relative to the repository) on a free port; gives its URL once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", script, "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.time() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError(f"{script} did not start:\n{log.read_text()}")
        time.sleep(0.3)
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def dashboard(tmp_path_factory):
    """`streamlit run streamlit_app.py` in sandbox mode on a free port, with its own SQLite file."""
    work = tmp_path_factory.mktemp("dashboard")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PICA_", "AUTHKIT_", "DATABASE_URL"))}
    env.update(DATABASE_URL=f"sqlite:///{work / 'dashboard.db'}", PICA_SECRETS_FILE=str(work / "none.toml"),
               AUTHKIT_GRANT_SECRET=GRANT_KEY)
    log = work / "streamlit.log"
    with streamlit_server("streamlit_app.py", env, log) as url:
        yield Dashboard(url, env["DATABASE_URL"], log)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is required for the browser tests: `make test` installs it "
                    "(apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield instance
        instance.close()


@pytest.fixture
def page(browser):
    # A loaded machine (CI, a parallel run) can take seconds between a click and the rerun that shows its result.
    from playwright.sync_api import expect

    expect.set_options(timeout=20_000)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    yield tab
    context.close()


def wait_idle(page, settle_ms: int = 300) -> None:
    """Wait until the script has finished running (and the page had a moment to paint)."""
    page.wait_for_timeout(150)
    page.wait_for_selector(IDLE, timeout=60_000)
    page.wait_for_timeout(settle_ms)


def open_path(page, dashboard: Dashboard, path: str = "") -> None:
    page.goto(f"{dashboard.url}/{path.lstrip('/')}")
    wait_idle(page)


def via_sidebar(page, *pages: str) -> None:
    """Click these pages' sidebar links in turn, each run settled (a reader's round trip)."""
    nav = page.locator("[data-testid='stSidebarNav']")
    for name in pages:
        nav.get_by_text(name).click()
        wait_idle(page)


def open_tab(page):
    """The page's first selected tab (a detail's own tabs come after the page's)."""
    return page.locator("[role='tab'][aria-selected='true']").first


def choose_the_first_broken_connection(page) -> None:
    """On Fleet health: select the failing list's first row, which opens it on Connections."""
    from playwright.sync_api import Error as PlaywrightError

    grid = page.locator("[data-testid='stDataFrame']").filter(has_text="since (UTC)").first
    for attempt in range(3):
        try:
            grid.scroll_into_view_if_needed()
            box = grid.bounding_box()
            break
        except PlaywrightError as exc:  # the table drawn again (a rerun ending) between finding and scrolling
            if "not attached" not in str(exc) or attempt == 2:
                raise
            wait_idle(page)
    page.mouse.click(box["x"] + 17, box["y"] + 35 + 17)  # the first row's marker
    page.wait_for_url("**/connections?**", timeout=30_000)
    wait_idle(page, settle_ms=600)


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path
