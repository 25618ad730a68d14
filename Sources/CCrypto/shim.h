/* SHA-256 is used through OpenSSL's one-algorithm API (SHA256_*, deprecated in OpenSSL 3 but kept):
 * the same assembly (SHA extensions where the CPU has them) without EVP's provider set-up, which
 * costs a few MB of resident memory on first use. Hence no deprecation warnings for it here. */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <openssl/evp.h>
#include <openssl/err.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
