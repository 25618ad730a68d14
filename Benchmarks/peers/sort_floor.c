/* The suffix-sort floor of the peer benchmark (compare.py's "floor" row): reads a file and sorts its
 * suffixes with libdivsufsort the way phoenix-diff's suffix-array index starts (SuffixArrayParts):
 * one sort below 16 MiB; from there two halves, each as far as 1 MiB past its end, or parts under
 * 2 GiB above 4 GiB, sorted side by side on the machine's cores. Nothing else: no engine built on
 * that library's sort, split that way, makes a patch of this file faster than this. */
#include <divsufsort.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define OVERLAP (1L << 20)
#define SPLIT_FROM (16L << 20)
#define MAX_PART (0x7fffffffL - 1 - OVERLAP)

static const unsigned char *text;
static long size, parts, part_size;
static atomic_long next_part;
static atomic_int failed;

static void *sort_parts(void *unused) {
    (void)unused;
    for (long i; (i = atomic_fetch_add(&next_part, 1)) < parts;) {
        long start = i * part_size, count = size - start < part_size ? size - start : part_size;
        long end = start + count + OVERLAP < size ? start + count + OVERLAP : size;
        saidx_t *sa = malloc(sizeof(saidx_t) * (size_t)(end - start > 0 ? end - start : 1));
        if (!sa || divsufsort(text + start, sa, (saidx_t)(end - start)) != 0) atomic_store(&failed, 1);
        free(sa);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: sort-floor FILE\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    if (fseek(f, 0, SEEK_END) != 0) { perror(argv[1]); return 1; }
    size = ftell(f);
    if (size < 0) {
        perror(argv[1]);
        return 1;
    }
    rewind(f);
    unsigned char *buffer = malloc(size > 0 ? (size_t)size : 1);
    if (!buffer || fread(buffer, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "%s: cannot read %ld bytes\n", argv[1], size);
        return 1;
    }
    fclose(f);
    text = buffer;
    parts = size < SPLIT_FROM ? 1 : 2;
    if ((size + MAX_PART - 1) / MAX_PART > parts) parts = (size + MAX_PART - 1) / MAX_PART;
    part_size = (size + parts - 1) / parts;
    long cores = sysconf(_SC_NPROCESSORS_ONLN), threads = cores < parts ? cores : parts;
    if (threads < 1) threads = 1;
    pthread_t *workers = malloc(sizeof(pthread_t) * (size_t)threads);
    long started = 1;
    while (started < threads && pthread_create(&workers[started], NULL, sort_parts, NULL) == 0) started++;
    sort_parts(NULL);
    for (long t = 1; t < started; t++) pthread_join(workers[t], NULL);
    free(workers);
    free(buffer);
    if (atomic_load(&failed)) {
        fprintf(stderr, "divsufsort failed\n");
        return 1;
    }
    return 0;
}
