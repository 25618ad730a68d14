#ifndef CPHOENIXSYS_H
#define CPHOENIXSYS_H
#include <stddef.h>
#include <stdint.h>
/// Atomically exchanges two paths on the same file system (Linux renameat2 with RENAME_EXCHANGE).
/// Returns 0, or -1 with errno set (EINVAL or ENOSYS where the file system or kernel lacks it).
int phx_rename_exchange(const char *a, const char *b);
/// Returns memory that malloc keeps after frees to the system (glibc malloc_trim); a no-op elsewhere.
void phx_release_free_memory(void);
/// Serves every allocation of `threshold` bytes or more with its own mapping, returned to the system
/// when freed (glibc's M_MMAP_THRESHOLD, fixed: glibc otherwise raises it after large frees and keeps
/// such memory in its heap); a no-op elsewhere.
void phx_map_large_allocations(size_t threshold);
/// Sets `mask[i]` in `bitmap[index[i]]` for i < count, each with an atomic OR (relaxed order): a
/// bitmap filled by several threads at once ends the same whatever the interleaving. A batch per call
/// keeps the call's cost off each bit. Bits already set (a repeated gram) are only read: bits are never
/// cleared, so skipping their OR changes nothing, and a plain load costs far less than a locked one
/// (the Django tar's make spent a fifth of its time in these ORs). Each word is asked for 16 probes
/// ahead, so that the misses on a bitmap larger than the caches overlap (numpy's make 8% faster).
void phx_atomic_or_batch(uint64_t *bitmap, const int64_t *index, const uint64_t *mask, size_t count);

/// Asks for the cache line at `p` ahead of a read (a hint: never faults, may be ignored).
static inline void phx_prefetch(const void *p) { __builtin_prefetch(p, 0); }

/// Starts writing `length` bytes of `fd` from `offset` back to the disk without waiting for them
/// (Linux sync_file_range with SYNC_FILE_RANGE_WRITE), so that a later fsync has less left to wait
/// for. Only a hint: returns 0 or -1 with errno, and is a no-op returning 0 elsewhere.
int phx_start_writeback(int fd, int64_t offset, int64_t length);
/// Temporary files to remove if the process is stopped by a signal (see
/// `phx_install_cleanup_handlers`). Records a copy of `path`; returns its slot, or -1 when all slots
/// are taken (the file is then not removed on a signal). Safe to call from any thread.
int phx_temp_register(const char *path);
/// mkstemp(`path_template`) and `phx_temp_register` of the file made, with the handled signals held
/// back from this thread in between. Returns the descriptor (or -1 with errno) and sets `*slot`.
int phx_temp_create(char *path_template, int *slot);
/// Stops tracking the file of `slot` (from `phx_temp_register`; -1 is ignored). Call after the file
/// was renamed into place or removed.
void phx_temp_forget(int slot);
/// Installs handlers, for a command-line program only: on SIGINT, SIGTERM, SIGHUP or SIGQUIT the
/// tracked temporary files are removed and the signal is raised again with its default action (so the
/// exit status still says which signal); on a SIGBUS for a mapped page that no longer exists (a
/// mapped file truncated while being read) they are removed, `bus_message` is written to standard
/// error and the process exits with `bus_status` (any other SIGBUS takes its default action).
/// Signals ignored at start (nohup, a background job) stay ignored; those handled are unblocked in the
/// calling thread (call it first, from the main thread). Returns 0, or -1 if one could not be installed.
int phx_install_cleanup_handlers(const char *bus_message, int bus_status);
/// Starts the program at `path` with `argv` (NULL-terminated) and this process's environment and
/// open files, with no signal blocked and SIGPIPE and SIGXFSZ at their default action, whatever the
/// calling thread blocks or the process ignores. (A thread of Swift's concurrency pool or of Dispatch
/// blocks nearly every signal, and a child started from it with Foundation's Process inherits that: an
/// app restarted so would ignore SIGTERM and Ctrl-C.) Returns 0 and sets `*pid`, or an errno value.
int phx_spawn(const char *path, char *const argv[], int *pid);
#endif
