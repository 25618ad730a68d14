#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "CPhoenixSys.h"

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

int phx_rename_exchange(const char *a, const char *b) {
#if defined(__linux__) && defined(SYS_renameat2)
    return (int)syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
#else
    (void)a; (void)b;
    errno = ENOSYS;
    return -1;
#endif
}

#if defined(__GLIBC__)
#include <malloc.h>
void phx_release_free_memory(void) { malloc_trim(0); }
void phx_map_large_allocations(size_t threshold) { mallopt(M_MMAP_THRESHOLD, (int)threshold); }
#else
void phx_release_free_memory(void) {}
void phx_map_large_allocations(size_t threshold) { (void)threshold; }
#endif

void phx_atomic_or_batch(uint64_t *bitmap, const int64_t *index, const uint64_t *mask, size_t count) {
    for (size_t i = 0; i < count; i++) {
        uint64_t *word = &bitmap[index[i]];
        if ((__atomic_load_n(word, __ATOMIC_RELAXED) & mask[i]) != mask[i])
            __atomic_fetch_or(word, mask[i], __ATOMIC_RELAXED);
    }
}

int phx_start_writeback(int fd, int64_t offset, int64_t length) {
#if defined(__linux__)
    return sync_file_range(fd, (off_t)offset, (off_t)length, SYNC_FILE_RANGE_WRITE);
#else
    (void)fd; (void)offset; (void)length;
    return 0;
#endif
}
