"""The official `@picahq/authkit` host package, unchanged, against our token route and the sandbox's page.

The package is GPL-3.0: it is installed from the npm registry at test time, never committed.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import threading
from urllib.parse import urlencode

import pytest
from playwright.sync_api import expect

from pica_core.config import Secret
from pica_core.tokens import GrantSigner
from tests.conftest import free_port
from tests.e2e.conftest import GRANT_KEY

pytestmark = pytest.mark.e2e
VERSION = "1.0.10"

HOST_PAGE = """<!doctype html><meta charset="utf-8"><title>host</title>
<button id="open">Connect</button>
<script type="module">
import { useAuthKit } from "./index.esm.js";
const params = new URLSearchParams(location.search);
window.results = [];
const kit = useAuthKit({
  token: { url: params.get("token"), headers: { "x-authkit-grant": params.get("grant") } },
  baseUrl: params.get("base"),
  selectedConnection: "Slack",
  title: "Connectez-vous: ünïcödé",
  onSuccess: (connection) => window.results.push({ type: "success", connection }),
  onError: (error) => window.results.push({ type: "error", error }),
  onClose: () => window.results.push({ type: "close" }),
});
document.getElementById("open").onclick = () => kit.open();
</script>"""


@pytest.fixture(scope="module")
def host_site(tmp_path_factory):
    """A static site (its own origin) holding the official package and a host page using it."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is required for this test (Node.js 20 with npm)")
    work = tmp_path_factory.mktemp("official-widget")
    subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(work), f"@picahq/authkit@{VERSION}"],
                   check=True, capture_output=True, timeout=300)
    site = work / "site"
    site.mkdir()
    shutil.copy(work / "node_modules" / "@picahq" / "authkit" / "dist" / "index.esm.js", site / "index.esm.js")
    (site / "host.html").write_text(HOST_PAGE, encoding="utf-8")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_official_package_connects_through_our_route_and_the_sandbox_page(dashboard, page, host_site):
    grant = GrantSigner(Secret(GRANT_KEY)).issue("npm-host-user", "organization")
    query = urlencode({"token": f"{dashboard.url}/api/authkit/token", "grant": grant,
                       "base": f"{dashboard.url}/sandbox/authkit"})
    page.goto(f"{host_site}/host.html?{query}")
    page.get_by_role("button", name="Connect").click()
    frame = page.frame_locator("#event-link")
    frame.get_by_role("heading", name="Connect Slack").wait_for()  # selectedConnection by display name
    expect(frame.get_by_text("Connectez-vous: ünïcödé")).to_be_visible()  # Latin-1: what the package's btoa can send
    frame.get_by_role("button", name="Authorize").click()
    page.wait_for_function("window.results.some(r => r.type === 'success')")
    success = page.evaluate("window.results.find(r => r.type === 'success').connection")
    assert success["identity"] == "npm-host-user" and success["identityType"] == "organization"
    assert success["platform"] == "slack" and success["key"].endswith("|npm-host-user")
    rows = dashboard.pica("/v1/vault/connections", key=success["key"])["rows"]
    assert [r["id"] for r in rows] == [success["_id"]]
    frame.get_by_role("button", name="Done").click()
    page.wait_for_function("window.results.some(r => r.type === 'close')")
    page.wait_for_selector("#event-link", state="detached")
