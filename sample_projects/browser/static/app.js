// The page: load or make the key, prove custody, sign in, call the API, show every exchange.
// DOM updates use textContent only: response bodies are data, never markup.

import { DPoPClient } from "./dpop.js";
import { forgetKey, loadOrCreateKey, publicJwk, thumbprint, tryExport } from "./keystore.js";
import { clearSession, exchangeCode, loadSession, startLogin, takeAuthorizationResponse } from "./oauth.js";

const $ = (id) => document.getElementById(id);
const short = (value) => (value ? `${value.slice(0, 12)}…` : "none");

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function setState(state) {
  document.body.dataset.state = state;
}

function showError(error) {
  const box = $("error");
  box.hidden = false;
  box.textContent = `${error.name ?? "Error"}: ${error.message ?? error}`;
}

// The access token is shortened on screen to keep the log readable (it is bound to our key, so it
// would be of no use to someone reading it over your shoulder anyway).
function redactToken(body) {
  return body.replace(/("access_token"\s*:\s*")([^"]{16})[^"]*"/, '$1$2…"');
}

// One line per request sent, the retry after a nonce challenge included.
function logExchange(exchange) {
  const item = element("li");
  Object.assign(item.dataset, {
    label: exchange.label,
    method: exchange.method,
    path: new URL(exchange.url).pathname,
    status: String(exchange.status),
    error: exchange.error ?? "",
    attempt: String(exchange.attempt),
    nonceSent: exchange.nonceSent ? "yes" : "no",
  });
  const retry = exchange.attempt > 0 ? "retry: " : "";
  item.append(element("span", `${retry}${exchange.method} ${exchange.url} → `));
  // A nonce challenge is the protocol at work, not a failure: shown apart from real errors.
  const statusClass = exchange.willRetry ? "status challenge" : `status s${String(exchange.status)[0]}`;
  item.append(element("span", `${exchange.status}${exchange.error ? ` ${exchange.error}` : ""}`, statusClass));
  item.append(element("span", `  (proof nonce: ${short(exchange.nonceSent)}; DPoP-Nonce back: ${short(exchange.nonceReceived)})`, "note"));
  if (exchange.willRetry) item.append(element("span", "  → new proof with the server's nonce", "note"));
  item.append(element("pre", redactToken(exchange.body) || "(empty body)"));
  $("log").append(item);
}

function showKey(key, jkt) {
  $("key-status").textContent = key.created ? "created now (stored in IndexedDB)" : "reused from IndexedDB";
  $("key-status").dataset.created = String(key.created);
  $("key-created").textContent = key.createdAt;
  $("key-algorithm").textContent = `${key.privateKey.algorithm.name} ${key.privateKey.algorithm.namedCurve} (ES256)`;
  $("key-extractable").textContent = String(key.privateKey.extractable);
  $("key-extractable").className = key.privateKey.extractable ? "bad" : "ok";
  $("jkt").textContent = jkt;
}

function showCustody(results) {
  const list = $("custody");
  list.replaceChildren();
  for (const result of results) {
    const item = element("li");
    item.dataset.format = result.format;
    item.dataset.exported = String(result.exported);
    item.append(element("code", `crypto.subtle.exportKey("${result.format}", privateKey)`), element("span", " → "));
    item.append(
      result.exported
        ? element("span", "EXPORTED: the key is NOT protected", "bad")
        : element("span", `refused: ${result.error}`, "ok"),
    );
    list.append(item);
  }
}

function showSession(session) {
  $("session-status").textContent = session
    ? `Signed in: DPoP-bound token for scope "${session.scope}", expires ${new Date(session.expiresAt).toLocaleTimeString()}.`
    : "Not signed in.";
  $("session-status").dataset.signedIn = String(Boolean(session));
  $("btn-login").disabled = false;
  $("btn-forget").disabled = false;
  for (const id of ["btn-me", "btn-note", "btn-logout"]) $(id).disabled = !session;
}

function showIdentity(identity, jkt) {
  $("id-sub").textContent = identity.sub;
  $("id-client").textContent = identity.client_id;
  $("id-scopes").textContent = identity.scopes.join(" ");
  $("id-jkt").textContent = identity.jkt;
  const match = identity.jkt === jkt;
  $("id-match").textContent = match ? "yes: cnf.jkt is this key's thumbprint" : "NO";
  $("id-match").className = match ? "ok" : "bad";
}

async function main() {
  const config = await (await fetch("config.json", { cache: "no-store" })).json();
  $("api-url").textContent = config.api;
  const key = await loadOrCreateKey();
  const jwk = await publicJwk(key.publicKey);
  const jkt = await thumbprint(jwk);
  showKey(key, jkt);
  showCustody(await tryExport(key.privateKey));

  const dpop = new DPoPClient(key, jwk, logExchange);
  let session = loadSession();
  const answer = takeAuthorizationResponse(config);
  if (answer) session = await exchangeCode(config, dpop, answer);
  showSession(session);

  // Each button: busy while it runs; any failure is shown, never swallowed.
  const action = (id, run) =>
    $(id).addEventListener("click", async () => {
      setState("busy");
      try {
        await run();
        setState("ready");
      } catch (error) {
        showError(error);
        setState("error");
      }
    });

  action("btn-login", () => startLogin(config, jkt));
  action("btn-me", async () => {
    const result = await dpop.fetch(`${config.api}/api/me`, { accessToken: session.accessToken, label: "me" });
    document.body.dataset.apiCalls = String(Number(document.body.dataset.apiCalls) + 1);
    if (result.status === 200) showIdentity(result.json, jkt);
    else if (result.status === 401) {
      clearSession(); // expired or refused token: sign in again
      session = null;
      showSession(session);
    }
  });
  action("btn-note", async () => {
    await dpop.fetch(`${config.api}/api/notes`, {
      method: "POST",
      accessToken: session.accessToken,
      body: JSON.stringify({ text: `hello from ${short(jkt)}` }),
      headers: { "Content-Type": "application/json" },
      label: "note",
    });
  });
  action("btn-logout", async () => {
    clearSession();
    session = null;
    showSession(session);
  });
  action("btn-forget", async () => {
    clearSession();
    await forgetKey();
    location.reload();
  });
  setState("ready");
}

main().catch((error) => {
  showError(error);
  setState("error");
});
