#include "phoenix_tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

static int is_ip_address(const char *host) {
    unsigned char buffer[16];
    return inet_pton(AF_INET, host, buffer) == 1 || inet_pton(AF_INET6, host, buffer) == 1;
}

int phoenix_verify_server_chain(const unsigned char *const *ders, const size_t *lengths, size_t count,
                                const char *ca_file, const char *host, char *message, size_t message_len) {
    int result = -1;
    X509 *leaf = NULL;
    STACK_OF(X509) *intermediates = sk_X509_new_null();
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (message_len > 0) message[0] = '\0';
    if (intermediates == NULL || store == NULL || ctx == NULL) {
        snprintf(message, message_len, "out of memory");
        goto done;
    }
    if (count == 0) {
        snprintf(message, message_len, "the server sent no certificate");
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        const unsigned char *p = ders[i];
        X509 *cert = d2i_X509(NULL, &p, (long)lengths[i]);
        if (cert == NULL || p != ders[i] + lengths[i]) {
            X509_free(cert);
            snprintf(message, message_len, "certificate %zu of the server's chain does not parse", i);
            goto done;
        }
        if (i == 0) {
            leaf = cert;
        } else if (!sk_X509_push(intermediates, cert)) {
            X509_free(cert);
            snprintf(message, message_len, "out of memory");
            goto done;
        }
    }
    if (ca_file != NULL) {
        if (X509_STORE_load_locations(store, ca_file, NULL) != 1) {
            snprintf(message, message_len, "cannot read CA certificates from %s", ca_file);
            goto done;
        }
    } else if (X509_STORE_set_default_paths(store) != 1) {
        snprintf(message, message_len, "cannot load the system's trusted certificates");
        goto done;
    }
    if (X509_STORE_CTX_init(ctx, store, leaf, intermediates) != 1) {
        snprintf(message, message_len, "cannot start verification");
        goto done;
    }
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER);
    if (host != NULL) {
        int ok = is_ip_address(host) ? X509_VERIFY_PARAM_set1_ip_asc(param, host)
                                     : X509_VERIFY_PARAM_set1_host(param, host, strlen(host));
        if (ok != 1) {
            snprintf(message, message_len, "cannot check the host name %s", host);
            goto done;
        }
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    }
    if (X509_verify_cert(ctx) == 1) {
        result = 0;
    } else {
        int error = X509_STORE_CTX_get_error(ctx);
        result = error > 0 ? error : -1;
        snprintf(message, message_len, "%s", X509_verify_cert_error_string(error));
    }
done:
    ERR_clear_error();
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    sk_X509_pop_free(intermediates, X509_free);
    X509_free(leaf);
    return result;
}

int phoenix_key_matches_certificate(const char *cert_pem, const char *key_pem, char *message, size_t message_len) {
    int result = -1;
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    FILE *f = fopen(cert_pem, "r");
    if (message_len > 0) message[0] = '\0';
    if (f == NULL) {
        snprintf(message, message_len, "cannot open %s", cert_pem);
        goto done;
    }
    cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (cert == NULL) {
        snprintf(message, message_len, "%s holds no PEM certificate", cert_pem);
        goto done;
    }
    f = fopen(key_pem, "r");
    if (f == NULL) {
        snprintf(message, message_len, "cannot open %s", key_pem);
        goto done;
    }
    key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (key == NULL) {
        snprintf(message, message_len, "%s holds no PEM private key (or it is encrypted)", key_pem);
        goto done;
    }
    result = X509_check_private_key(cert, key) == 1 ? 1 : 0;
    if (result == 0) snprintf(message, message_len, "the key's public half is not the certificate's");
done:
    ERR_clear_error();
    EVP_PKEY_free(key);
    X509_free(cert);
    return result;
}
