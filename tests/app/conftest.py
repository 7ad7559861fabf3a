"""AppTest helpers: run the real entry script (navigation, banner, safety net) on a chosen page."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT

ENTRY = str(ROOT / "streamlit_app.py")


def open_page(page: str, *, query: dict | None = None, user: dict | None = None, timeout: float = 60) -> AppTest:
    """Run `pages/<page>.py` through the entry script, like a browser opening its URL."""
    at = AppTest.from_file(ENTRY, default_timeout=timeout)
    if user is not None:
        at.user = user
    at.run()  # AppTest needs one run of the entry script (st.navigation) before switching pages
    at.switch_page(f"pages/{page}.py")
    for name, value in (query or {}).items():
        at.query_params[name] = value
    return at.run()


def press_and_wait(at: AppTest, label: str, job: str) -> AppTest:
    """Press the button labelled `label` and let the job it starts (session key `job`) end. It runs on its own
    thread and the page's fragment shows its outcome when it ends; AppTest runs no timed fragment, so the page is
    run again then."""
    next(b for b in at.button if b.label == label).click().run()
    if job in at.session_state:
        assert at.session_state[job].done.wait(60), f"{job} did not end"
        at.run()
    return at


def press_sync(at: AppTest, label: str = "Sync now") -> AppTest:
    """Press Sync now (or Resume) on Fleet and let the sync end."""
    return press_and_wait(at, label, "sync-job")


def press_triage(at: AppTest) -> AppTest:
    """Press Triage on Connections and let the triage end."""
    return press_and_wait(at, "Triage", "triage-job")


def assert_clean(at: AppTest) -> None:
    """No exception element and no error-level message from the safety net."""
    assert not at.exception, [e.value for e in at.exception]
    assert not [e for e in at.error if "unexpected error" in e.value], [e.value for e in at.error]


@pytest.fixture(autouse=True)
def _navigation_not_legacy_pages(monkeypatch):
    """AppTest resets Streamlit's legacy-pages flag before every run; keep it as the server has it
    (pica_core.web.declare_navigation), so pages run inside the entry script as in production."""
    from streamlit.runtime.pages_manager import PagesManager

    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)
