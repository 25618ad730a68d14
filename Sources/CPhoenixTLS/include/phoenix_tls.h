#ifndef PHOENIX_TLS_H
#define PHOENIX_TLS_H

#include <stddef.h>

/// Verifies a server's certificate chain with OpenSSL's verifier (libcrypto): the chain to a trusted
/// root (from `ca_file`, or the system's default store when NULL), every certificate's validity
/// period, the TLS-server purpose, and that the leaf names `host` (a DNS name or an IP address).
///
/// `ders`/`lengths`: the certificates as the server sent them, leaf first, DER-encoded.
/// Returns 0 when the chain verifies; otherwise an X509_V_ERR_* code (> 0), or -1 when a certificate
/// or the CA file cannot be read; `message` then says why (NUL-terminated, truncated to `message_len`).
int phoenix_verify_server_chain(const unsigned char *const *ders, const size_t *lengths, size_t count,
                                const char *ca_file, const char *host, char *message, size_t message_len);

/// Whether the first certificate in `cert_pem` and the private key in `key_pem` (PEM files) belong
/// together. Returns 1 when they do, 0 when they do not, -1 when a file cannot be read (`message` says
/// which and why).
int phoenix_key_matches_certificate(const char *cert_pem, const char *key_pem, char *message, size_t message_len);

/// The X509_V_ERR_* codes the client names in its errors.
enum {
    PHOENIX_X509_CERT_NOT_YET_VALID = 9,
    PHOENIX_X509_CERT_HAS_EXPIRED = 10,
    PHOENIX_X509_DEPTH_ZERO_SELF_SIGNED = 18,
    PHOENIX_X509_SELF_SIGNED_IN_CHAIN = 19,
    PHOENIX_X509_UNABLE_TO_GET_ISSUER_LOCALLY = 20,
    PHOENIX_X509_UNABLE_TO_VERIFY_LEAF = 21,
    PHOENIX_X509_HOSTNAME_MISMATCH = 62,
    PHOENIX_X509_IP_ADDRESS_MISMATCH = 64,
};

#endif
