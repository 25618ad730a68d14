#ifndef CPHOENIXSYS_H
#define CPHOENIXSYS_H
/// Atomically exchanges two paths on the same file system (Linux renameat2 with RENAME_EXCHANGE).
/// Returns 0, or -1 with errno set (EINVAL or ENOSYS where the file system or kernel lacks it).
int phx_rename_exchange(const char *a, const char *b);
/// Returns memory that malloc keeps after frees to the system (glibc malloc_trim); a no-op elsewhere.
void phx_release_free_memory(void);
#endif
