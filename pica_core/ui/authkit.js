// Host side of Pica's AuthKit widget protocol (docs: authkit-protocol.md), written for this dashboard.
// Components v2 run this in the app's page, so the overlay iframe covers the whole window.
//
// data: {nonce, baseUrl, tokenUrl, headers, title, selectedConnection, appTheme, companyName, imageUrl}
// Python gets: state "connection" ({nonce, record}) on LINK_SUCCESS (state, so a quick close cannot
// overwrite it), trigger "event" ({nonce, type: "error"|"close", message}) otherwise.

const OVERLAY_ID = "pica-authkit-overlay";
const CLOSE_ID = "pica-authkit-close";
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
  document.getElementById(CLOSE_ID)?.remove();
  const iframe = document.createElement("iframe");
  iframe.id = OVERLAY_ID;
  iframe.title = "Connect an integration";
  iframe.setAttribute("data-testid", "authkit-overlay");
  Object.assign(iframe.style, {
    position: "fixed", inset: "0", width: "100%", height: "100%", border: "0", zIndex: "2147483000",
    background: "transparent", visibility: "hidden",
  });
  iframe.src = `${baseUrl}?data=${encodeURIComponent(encodeConfig(config))}`;

  // The dashboard's own way out, above the page: an AuthKit page that failed to load (its host down, a proxy's
  // error page) covered the whole window with nothing that could close it.
  const closeButton = document.createElement("button");
  closeButton.id = CLOSE_ID;
  closeButton.type = "button";
  closeButton.textContent = "\u00d7";
  closeButton.title = "Close AuthKit";
  closeButton.setAttribute("aria-label", "Close AuthKit");
  Object.assign(closeButton.style, {
    position: "fixed", top: "12px", right: "12px", zIndex: "2147483001", width: "36px", height: "36px",
    borderRadius: "18px", border: "0", background: "rgba(0, 0, 0, 0.55)", color: "#fff", fontSize: "22px",
    lineHeight: "36px", cursor: "pointer", visibility: "hidden",
  });

  let visible = false;
  let closed = false;
  const close = () => {
    closed = true;
    window.removeEventListener("message", onMessage);
    closeButton.remove();
    setTimeout(() => iframe.remove(), 200);
  };
  closeButton.addEventListener("click", () => {
    setTriggerValue("event", { nonce: data.nonce, type: "close" });
    close();
  });
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
    setTimeout(() => {
      if (closed) return;
      iframe.style.visibility = closeButton.style.visibility = "visible";
      visible = true;
    }, 100);
    iframe.contentWindow?.postMessage(config, pageOrigin);
  });
  window.addEventListener("message", onMessage);
  document.body.appendChild(iframe);
  document.body.appendChild(closeButton);
  // A page that cannot be reached at all (nothing listening, no such host) says so, and no overlay shows: the
  // frame's load event fires for the browser's own error page too. Asked beside the frame, so it costs no wait.
  fetch(baseUrl, { mode: "no-cors", cache: "no-store" }).catch(() => {
    if (closed) return;
    setTriggerValue("event", {
      nonce: data.nonce, type: "error",
      message: `The AuthKit page at ${pageOrigin} could not be reached: check PICA_AUTHKIT_URL and the network, then open AuthKit again.`,
    });
    close();
  });
  // Unmounted (the user left the page): take the overlay with it.
  return () => {
    closed = true;
    window.removeEventListener("message", onMessage);
    iframe.remove();
    closeButton.remove();
  };
}
