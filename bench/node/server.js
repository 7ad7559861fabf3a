// The seed guide's reference AuthKit token backend: a minimal Node HTTP server using
// @picahq/authkit-token (GPL-3.0, installed by bench/token_route.py into node_modules, never committed).
//
//   node server.js --port 8700 --pica-url http://127.0.0.1:8600 [--secret sk_test_sandbox]
//
// POST /api/authkit/token with `x-user-id: <identity>` (and optionally `x-identity-type`): answers the token
// object the generator returns. OPTIONS answers the CORS preflight. Same CORS headers as pica_core.tokens.
"use strict";

const http = require("http");
const { AuthKitToken } = require("@picahq/authkit-token");

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const port = Number(arg("port", "8700"));
const baseUrl = arg("pica-url", process.env.PICA_API_URL || "http://127.0.0.1:8600");
const secret = arg("secret", process.env.PICA_SECRET_KEY || "sk_test_sandbox");

const CORS = {
  "Access-Control-Allow-Origin": "*",
  "Access-Control-Allow-Methods": "POST, OPTIONS",
  "Access-Control-Allow-Headers": "Content-Type, Authorization, x-user-id, x-authkit-grant",
  "Access-Control-Max-Age": "600",
  "Cache-Control": "no-store",
};

function send(res, status, body) {
  const data = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { ...CORS, "Content-Type": "application/json", "Content-Length": data.length });
  res.end(data);
}

const server = http.createServer((req, res) => {
  if (req.method === "OPTIONS") {
    res.writeHead(204, CORS);
    res.end();
    return;
  }
  if (req.method !== "POST") {
    send(res, 405, { error: `${req.method} is not allowed: POST a JSON body.`, status: 405 });
    return;
  }
  req.resume(); // the body is {} from the widget: not needed
  req.on("end", async () => {
    const identity = req.headers["x-user-id"];
    if (!identity) {
      send(res, 400, { error: "x-user-id header is required", status: 400 });
      return;
    }
    try {
      const authKitToken = new AuthKitToken(secret, { baseUrl });
      const token = await authKitToken.create({ identity, identityType: req.headers["x-identity-type"] || "user" });
      if (!token || !Array.isArray(token.rows)) {
        send(res, 502, { error: "Pica answered an error", status: 502, detail: token ?? null });
        return;
      }
      send(res, 200, token);
    } catch (err) {
      send(res, 500, { error: String(err && err.message ? err.message : err), status: 500 });
    }
  });
});

server.keepAliveTimeout = 65_000;
server.listen(port, "127.0.0.1", () => {
  console.log(`authkit token reference backend on http://127.0.0.1:${port} → Pica at ${baseUrl}`);
});
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => process.exit(0));
