#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
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
        if (i + 16 < count) __builtin_prefetch(&bitmap[index[i + 16]], 1);
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

/* Temporary files to remove on a signal: a fixed table of path copies, each slot claimed and emptied
   with atomic operations, so that the handler (which may interrupt any thread, even one inside
   register or forget) only ever takes a path out of its slot and unlinks it: it never frees, and a
   path is freed only by whoever took it out. */
#define PHX_TEMP_SLOTS 1024
/* The signals whose handler removes the temporary files (`phx_install_cleanup_handlers`), which
   `phx_temp_create` also holds back while it creates and registers a file. */
static const int phx_handled_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGBUS};
#define PHX_HANDLED_COUNT (sizeof phx_handled_signals / sizeof phx_handled_signals[0])

static void phx_handled_set(sigset_t *set) {
    sigemptyset(set);
    for (size_t i = 0; i < PHX_HANDLED_COUNT; i++) sigaddset(set, phx_handled_signals[i]);
}
static char *_Atomic phx_temp_slots[PHX_TEMP_SLOTS];
/* 0: no clean-up yet, 1: under way, 2: done. */
static _Atomic int phx_cleaning = 0;

int phx_temp_register(const char *path) {
    char *copy = strdup(path);
    if (copy == NULL) return -1;
    for (int i = 0; i < PHX_TEMP_SLOTS; i++) {
        char *empty = NULL;
        if (atomic_load_explicit(&phx_temp_slots[i], memory_order_relaxed) == NULL
            && atomic_compare_exchange_strong(&phx_temp_slots[i], &empty, copy)) {
            /* A clean-up that began before the slot was claimed (on another thread, while this one
               goes on until the signal ends the process) may have missed it: remove the file here.
               Claim, then look (both sequentially consistent): either the clean-up's scan sees the
               slot, or this sees the clean-up. */
            if (atomic_load(&phx_cleaning) != 0) {
                char *mine = atomic_exchange(&phx_temp_slots[i], NULL);
                if (mine != NULL) {
                    unlink(mine);
                    free(mine);
                }
                return -1;
            }
            return i;
        }
    }
    free(copy);
    return -1;
}

int phx_temp_create(char *path_template, int *slot) {
    /* The stopping signals are held back from this thread between the file's creation and its
       registration: a signal handled here in between would end the process with the file unknown to
       the clean-up. (One handled on another thread meanwhile is caught by the registration.) */
    /* SIGBUS among them: one sent by kill (nothing here reads a mapping, so no fault can be held back). */
    sigset_t stopping, previous;
    phx_handled_set(&stopping);
    pthread_sigmask(SIG_BLOCK, &stopping, &previous);
    int fd = mkstemp(path_template);
    int saved = errno;
    *slot = fd >= 0 ? phx_temp_register(path_template) : -1;
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    errno = saved;
    return fd;
}

void phx_temp_forget(int slot) {
    if (slot < 0 || slot >= PHX_TEMP_SLOTS) return;
    free(atomic_exchange(&phx_temp_slots[slot], NULL));
}

/* Async-signal-safe: atomic exchanges and unlink. Every slot is looked at (no high-water mark that a
   signal could find not yet raised for a slot just claimed). */
static void phx_temp_remove_all(void) {
    for (int i = 0; i < PHX_TEMP_SLOTS; i++) {
        char *path = atomic_exchange(&phx_temp_slots[i], NULL);
        if (path != NULL) unlink(path);
    }
}

static const char *phx_bus_message = "";
static size_t phx_bus_message_length = 0;
static int phx_bus_status = 1;

/* Runs with all the handled signals blocked in its thread (sa_mask); a second signal delivered to
   another thread meanwhile (a SIGTERM after Ctrl-C) waits here for the first clean-up to finish
   before it ends the process, instead of ending it with paths taken out but not yet unlinked. */
static void phx_on_signal(int sig, siginfo_t *info, void *context) {
    (void)context;
    int idle = 0;
    if (atomic_compare_exchange_strong(&phx_cleaning, &idle, 1)) {
        phx_temp_remove_all();
        atomic_store(&phx_cleaning, 2);
    } else {
        while (atomic_load(&phx_cleaning) != 2) {}
    }
    if (sig == SIGBUS) {
        if (info != NULL && info->si_code == BUS_ADRERR) {
            /* A mapped page that no longer exists (the file was truncated): returning would fault
               again. Say why and stop. */
            ssize_t ignored = write(STDERR_FILENO, phx_bus_message, phx_bus_message_length);
            (void)ignored;
            _exit(phx_bus_status);
        }
        /* Any other SIGBUS (sent by kill, a hardware error, misalignment) is not ours to explain:
           its default action, once the handler returns. */
        signal(SIGBUS, SIG_DFL);
    }
    /* The default action is back (SA_RESETHAND, or just above): raise the signal again, delivered when
       the handler returns, so that the exit status names it. */
    raise(sig);
}

int phx_install_cleanup_handlers(const char *bus_message, int bus_status) {
    char *copy = strdup(bus_message);
    if (copy == NULL) return -1;
    phx_bus_message = copy;
    phx_bus_message_length = strlen(copy);
    phx_bus_status = bus_status;
    const int *signals = phx_handled_signals;
    sigset_t all;
    phx_handled_set(&all);
    sigset_t handled;
    sigemptyset(&handled);
    for (size_t i = 0; i < PHX_HANDLED_COUNT; i++) {
        struct sigaction previous;
        if (sigaction(signals[i], NULL, &previous) != 0) return -1;
        /* A signal ignored when we started (nohup, a background job) stays ignored. */
        if (signals[i] != SIGBUS && previous.sa_handler == SIG_IGN) continue;
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_sigaction = phx_on_signal;
        action.sa_mask = all;
        action.sa_flags = SA_SIGINFO | (signals[i] == SIGBUS ? 0 : SA_RESETHAND);
        if (sigaction(signals[i], &action, NULL) != 0) return -1;
        sigaddset(&handled, signals[i]);
    }
    /* A parent may have started us with them blocked (Foundation's Process from a pool thread does):
       unblocked here, in the calling thread and the threads it starts later. */
    return pthread_sigmask(SIG_UNBLOCK, &handled, NULL) == 0 ? 0 : -1;
}

extern char **environ;

int phx_spawn(const char *path, char *const argv[], int *pid) {
    posix_spawnattr_t attributes;
    int error = posix_spawnattr_init(&attributes);
    if (error != 0) return error;
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGXFSZ);
    error = posix_spawnattr_setsigmask(&attributes, &none);
    if (error == 0) error = posix_spawnattr_setsigdefault(&attributes, &defaults);
    if (error == 0) error = posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t child = 0;
    if (error == 0) error = posix_spawn(&child, path, NULL, &attributes, argv, environ);
    posix_spawnattr_destroy(&attributes);
    if (error == 0) *pid = (int)child;
    return error;
}
