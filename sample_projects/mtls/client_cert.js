// RFC 9440 Client-Cert from nginx (njs, Debian's libnginx-mod-http-js): the verified client
// certificate as a structured-field byte sequence, ":" base64(DER) ":". nginx's own variables hold
// the certificate as PEM only, and a PEM body without its armour lines and line breaks is exactly
// that base64. Empty without a verified certificate, and nginx does not send an empty header.
function rfc9440(r) {
    var pem = r.variables.ssl_client_raw_cert;
    if (!pem || r.variables.ssl_client_verify !== 'SUCCESS') {
        return '';
    }
    return ':' + pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '') + ':';
}

export default {rfc9440};
