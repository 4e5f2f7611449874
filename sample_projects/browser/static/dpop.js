// DPoP proofs (RFC 9449 §4) signed with the non-extractable key, and fetch() with one nonce retry.

import { base64url, base64urlJson, randomToken, sha256, utf8 } from "./encoding.js";

// htu is the target URI without query and fragment (RFC 9449 §4.2); URL.origin also drops a
// default port and lowercases the host, as the server normalises them.
export function htuOf(url) {
  const parsed = new URL(url);
  return `${parsed.origin}${parsed.pathname}`;
}

// The server asks for a nonce: 401 with WWW-Authenticate error="use_dpop_nonce" from a resource
// server, 400 {"error": "use_dpop_nonce"} from a token endpoint (RFC 9449 §8, §9).
function nonceError(status, wwwAuthenticate, text) {
  if (status === 401) return /error="use_dpop_nonce"/.test(wwwAuthenticate ?? "");
  if (status === 400) {
    try {
      return JSON.parse(text).error === "use_dpop_nonce";
    } catch {
      return false;
    }
  }
  return false;
}

function errorCode(wwwAuthenticate, json) {
  const match = /error="([^"]+)"/.exec(wwwAuthenticate ?? "");
  return match ? match[1] : (json?.error ?? null);
}

export class DPoPClient {
  // keyPair: the CryptoKeyPair from IndexedDB; jwk: its public JWK; onExchange: called for each
  // request sent, with what went out and what came back (the page lists them).
  constructor(keyPair, jwk, onExchange = () => {}) {
    this.privateKey = keyPair.privateKey;
    this.jwk = jwk;
    this.onExchange = onExchange;
    this.nonces = new Map(); // the latest DPoP-Nonce per origin, in memory only
  }

  async proof(method, url, { accessToken = null, nonce = null } = {}) {
    const header = { typ: "dpop+jwt", alg: "ES256", jwk: this.jwk };
    const claims = {
      jti: randomToken(16), // unique per proof: the server refuses a replay
      htm: method.toUpperCase(),
      htu: htuOf(url),
      iat: Math.floor(Date.now() / 1000),
    };
    if (accessToken) claims.ath = base64url(await sha256(accessToken)); // binds the proof to the token
    if (nonce) claims.nonce = nonce;
    const signingInput = `${base64urlJson(header)}.${base64urlJson(claims)}`;
    // WebCrypto's ECDSA signature is r || s (IEEE P1363), exactly the JWS ES256 encoding.
    const signature = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, this.privateKey, utf8(signingInput));
    return `${signingInput}.${base64url(signature)}`;
  }

  // fetch() with a fresh proof per attempt; a use_dpop_nonce challenge is answered once.
  async fetch(url, { method = "GET", accessToken = null, body = undefined, headers = {}, label = "" } = {}) {
    const origin = new URL(url).origin;
    let nonce = this.nonces.get(origin) ?? null;
    for (let attempt = 0; ; attempt += 1) {
      const sent = new Headers(headers);
      sent.set("DPoP", await this.proof(method, url, { accessToken, nonce }));
      if (accessToken) sent.set("Authorization", `DPoP ${accessToken}`);
      // credentials: "omit": no cookies; the token and the proof are all the API needs.
      const response = await fetch(url, { method, headers: sent, body, credentials: "omit", cache: "no-store" });
      const text = await response.text();
      let json = null;
      try {
        json = JSON.parse(text);
      } catch {
        json = null;
      }
      // Readable cross-origin only because the API exposes these headers (CORS).
      const fresh = response.headers.get("DPoP-Nonce");
      const wwwAuthenticate = response.headers.get("WWW-Authenticate");
      if (fresh) this.nonces.set(origin, fresh);
      const retry = attempt === 0 && fresh !== null && nonceError(response.status, wwwAuthenticate, text);
      this.onExchange({
        label,
        method,
        url,
        attempt,
        status: response.status,
        error: response.ok ? null : errorCode(wwwAuthenticate, json),
        nonceSent: nonce,
        nonceReceived: fresh,
        wwwAuthenticate,
        body: text,
        willRetry: retry,
      });
      if (!retry) return { status: response.status, ok: response.ok, json, text };
      nonce = fresh;
    }
  }
}
