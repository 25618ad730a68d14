#ifndef CPHOENIXSYS_H
#define CPHOENIXSYS_H
#include <stdint.h>
/// Atomically exchanges two paths on the same file system (Linux renameat2 with RENAME_EXCHANGE).
/// Returns 0, or -1 with errno set (EINVAL or ENOSYS where the file system or kernel lacks it).
int phx_rename_exchange(const char *a, const char *b);
/// Returns memory that malloc keeps after frees to the system (glibc malloc_trim); a no-op elsewhere.
void phx_release_free_memory(void);
/// Sets `bits` in `*word` atomically (relaxed order): a bitmap filled by several threads at once ends
/// the same whatever the interleaving.
static inline void phx_atomic_or64(uint64_t *word, uint64_t bits) { __atomic_fetch_or(word, bits, __ATOMIC_RELAXED); }
#endif
