// The DPoP key: made by WebCrypto as NON-EXTRACTABLE, kept in IndexedDB, reused across reloads.
//
// IndexedDB stores the CryptoKey objects themselves (structured clone): the private key's bytes
// never reach JavaScript, so no script (ours, an extension's or an attacker's) can read or send
// them anywhere. localStorage could only hold strings, i.e. an exported, stealable key: never.

import { base64url, sha256 } from "./encoding.js";

const DB_NAME = "dpop-browser-sample";
const STORE = "keys";
const KEY_ID = "dpop-key";
export const ALGORITHM = { name: "ECDSA", namedCurve: "P-256" }; // ES256

function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

// Run one request in its own transaction; resolve when the transaction has committed.
function inTransaction(db, mode, makeRequest) {
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const request = makeRequest(tx.objectStore(STORE));
    tx.oncomplete = () => resolve(request.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

// The stored key pair, or a new one. Returns {privateKey, publicKey, createdAt, created}.
export async function loadOrCreateKey() {
  const db = await openDb();
  try {
    const stored = await inTransaction(db, "readonly", (store) => store.get(KEY_ID));
    if (stored) return { ...stored, created: false };
    // extractable: false. The public half stays exportable (WebCrypto always allows that), which
    // is what the proof's `jwk` header needs; the private half can only be used to sign.
    const pair = await crypto.subtle.generateKey(ALGORITHM, false, ["sign", "verify"]);
    const record = { privateKey: pair.privateKey, publicKey: pair.publicKey, createdAt: new Date().toISOString() };
    try {
      // add, not put: if another tab stored a key meanwhile, keep that one (one key per browser).
      await inTransaction(db, "readwrite", (store) => store.add(record, KEY_ID));
      return { ...record, created: true };
    } catch (error) {
      if (error?.name !== "ConstraintError") throw error;
      return { ...(await inTransaction(db, "readonly", (store) => store.get(KEY_ID))), created: false };
    }
  } finally {
    db.close();
  }
}

export async function forgetKey() {
  const db = await openDb();
  try {
    await inTransaction(db, "readwrite", (store) => store.delete(KEY_ID));
  } finally {
    db.close();
  }
}

// The public key as the JWK a proof carries: only the members RFC 7638 hashes for an EC key.
export async function publicJwk(publicKey) {
  const { kty, crv, x, y } = await crypto.subtle.exportKey("jwk", publicKey);
  return { kty, crv, x, y };
}

// RFC 7638 thumbprint: SHA-256 of the required members in lexicographic order, no whitespace.
// This is the `jkt` the issuer puts in the token's cnf claim.
export async function thumbprint(jwk) {
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  return base64url(await sha256(canonical));
}

// The custody check shown on the page: every export of the private key must fail.
export async function tryExport(privateKey) {
  const results = [];
  for (const format of ["jwk", "pkcs8"]) {
    try {
      await crypto.subtle.exportKey(format, privateKey);
      results.push({ format, exported: true, error: null });
    } catch (error) {
      results.push({ format, exported: false, error: `${error.name}: ${error.message}` });
    }
  }
  return results;
}
