// Host side of Pica's AuthKit widget protocol (docs: authkit-protocol.md), written for this dashboard.
// Components v2 run this in the app's page, so the overlay iframe covers the whole window.
//
// data: {nonce, baseUrl, tokenUrl, headers, title, selectedConnection, appTheme, companyName, imageUrl}
// Python gets: state "connection" ({nonce, record}) on LINK_SUCCESS (state, so a quick close cannot
// overwrite it), trigger "event" ({nonce, type: "error"|"close", message}) otherwise.

const OVERLAY_ID = "pica-authkit-overlay";
const handled = (window.__picaAuthkitHandled = window.__picaAuthkitHandled || new Set());

// JSON with every non-ASCII character escaped (\uXXXX): base64 of it is safe for btoa, and any
// decoder (JSON.parse(atob(…)) as Pica's page does, or a UTF-8 one) gets back the exact text.
function encodeConfig(config) {
  const ascii = JSON.stringify(config).replace(/[\u007f-\uffff]/g,
    (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
  return btoa(ascii);
}

function absolute(url) {
  return new URL(url, window.location.origin).href;
}

export default function ({ data, setStateValue, setTriggerValue }) {
  if (!data || !data.nonce || handled.has(data.nonce)) return;
  handled.add(data.nonce);

  const baseUrl = absolute(data.baseUrl);
  const pageOrigin = new URL(baseUrl).origin;
  const config = {
    linkTokenEndpoint: absolute(data.tokenUrl),
    linkHeaders: data.headers || {},
    title: data.title || undefined,
    imageUrl: data.imageUrl || undefined,
    companyName: data.companyName || undefined,
    selectedConnection: data.selectedConnection || undefined,
    appTheme: data.appTheme || undefined,
  };
  Object.keys(config).forEach((k) => config[k] === undefined && delete config[k]);

  document.getElementById(OVERLAY_ID)?.remove();
  const iframe = document.createElement("iframe");
  iframe.id = OVERLAY_ID;
  iframe.title = "Connect an integration";
  iframe.setAttribute("data-testid", "authkit-overlay");
  Object.assign(iframe.style, {
    position: "fixed", inset: "0", width: "100%", height: "100%", border: "0", zIndex: "2147483000",
    background: "transparent", visibility: "hidden",
  });
  iframe.src = `${baseUrl}?data=${encodeURIComponent(encodeConfig(config))}`;

  let visible = false;
  const close = () => {
    window.removeEventListener("message", onMessage);
    setTimeout(() => iframe.remove(), 200);
  };
  const onMessage = (event) => {
    // Only our own iframe may speak, and only from the AuthKit page's origin: a forged
    // LINK_SUCCESS from any other frame or window is ignored.
    if (!visible || event.source !== iframe.contentWindow || event.origin !== pageOrigin) return;
    const payload = event.data;
    if (!payload || typeof payload.messageType !== "string") return;
    if (payload.messageType === "LINK_SUCCESS") {
      setStateValue("connection", { nonce: data.nonce, record: payload.message || null });
    } else if (payload.messageType === "LINK_ERROR") {
      setTriggerValue("event", { nonce: data.nonce, type: "error", message: String(payload.message || "") });
    } else if (payload.messageType === "EXIT_EVENT_LINK") {
      setTriggerValue("event", { nonce: data.nonce, type: "close" });
      close();
    }
  };
  iframe.addEventListener("load", () => {
    setTimeout(() => { iframe.style.visibility = "visible"; visible = true; }, 100);
    iframe.contentWindow?.postMessage(config, pageOrigin);
  });
  window.addEventListener("message", onMessage);
  document.body.appendChild(iframe);
  // Unmounted (the user left the page): take the overlay with it.
  return () => {
    window.removeEventListener("message", onMessage);
    iframe.remove();
  };
}
