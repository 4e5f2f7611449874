// The public client's login: authorization code + PKCE (RFC 7636), the code bound to our key with
// dpop_jkt (RFC 9449 §10), the token bound to it by the token request's DPoP proof.

import { base64url, randomToken, sha256 } from "./encoding.js";

const PENDING = "dpop-sample.pending-login"; // sessionStorage: this tab's PKCE verifier and state
const SESSION = "dpop-sample.token"; // sessionStorage: the access token (useless without the key)

export async function startLogin(config, jkt) {
  const verifier = randomToken(32);
  const state = randomToken(16);
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state }));
  const url = new URL(config.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: config.client_id,
    redirect_uri: config.redirect_uri,
    scope: config.scope,
    state,
    code_challenge: base64url(await sha256(verifier)),
    code_challenge_method: "S256",
    dpop_jkt: jkt,
  }).toString();
  location.assign(url.toString());
}

// The authorization response in the address bar, checked; null when there is none.
export function takeAuthorizationResponse(config) {
  const params = new URLSearchParams(location.search);
  if (!params.has("code") && !params.has("error")) return null;
  // The code must not stay in the address bar, the history or a bookmark.
  history.replaceState(null, "", location.pathname);
  const pending = JSON.parse(sessionStorage.getItem(PENDING) ?? "null");
  sessionStorage.removeItem(PENDING);
  if (!pending || params.get("state") !== pending.state) throw new Error("state mismatch: not an answer to our login");
  if (params.get("iss") !== config.issuer) throw new Error("iss mismatch: the answer is not from our issuer (RFC 9207)");
  if (params.has("error")) throw new Error(`login refused: ${params.get("error")} ${params.get("error_description") ?? ""}`);
  return { code: params.get("code"), verifier: pending.verifier };
}

export async function exchangeCode(config, dpop, { code, verifier }) {
  const body = new URLSearchParams({
    grant_type: "authorization_code",
    code,
    redirect_uri: config.redirect_uri,
    client_id: config.client_id,
    code_verifier: verifier,
  });
  const result = await dpop.fetch(config.token_endpoint, { method: "POST", body, label: "token" });
  if (!result.ok) throw new Error(`token request failed: ${result.status} ${result.json?.error ?? result.text}`);
  if (result.json.token_type !== "DPoP") throw new Error("the issuer did not bind the token to our key");
  const session = {
    accessToken: result.json.access_token,
    scope: result.json.scope,
    expiresAt: Date.now() + result.json.expires_in * 1000,
  };
  sessionStorage.setItem(SESSION, JSON.stringify(session));
  return session;
}

export function loadSession() {
  const session = JSON.parse(sessionStorage.getItem(SESSION) ?? "null");
  if (session && session.expiresAt > Date.now() + 5000) return session;
  sessionStorage.removeItem(SESSION);
  return null;
}

export function clearSession() {
  sessionStorage.removeItem(SESSION);
}
