// Byte helpers: base64url (RFC 4648 §5, no padding, as JOSE wants it), UTF-8, SHA-256, random tokens.

export function base64url(bytes) {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let binary = "";
  for (const byte of view) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export const utf8 = (text) => new TextEncoder().encode(text);

export const base64urlJson = (value) => base64url(utf8(JSON.stringify(value)));

export async function sha256(text) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", utf8(text)));
}

// `size` random bytes from the platform's CSPRNG, base64url-encoded.
export function randomToken(size = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(size)));
}
