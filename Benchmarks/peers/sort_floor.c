/* The suffix-sort floor of the peer benchmark (compare.py's "floor" row): reads a file and sorts its
 * suffixes with libdivsufsort, the sort phoenix-diff's make starts with, and nothing else. No engine
 * built on that library's single-threaded sort makes a patch of this file faster than this. */
#include <divsufsort.h>
#include <divsufsort64.h>
#include <stdio.h>
#include <stdlib.h>

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
    long size = ftell(f);
    if (size < 0) {
        perror(argv[1]);
        return 1;
    }
    rewind(f);
    unsigned char *text = malloc(size > 0 ? (size_t)size : 1);
    if (!text || fread(text, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "%s: cannot read %ld bytes\n", argv[1], size);
        return 1;
    }
    fclose(f);
    int rc;
    if (size < 0x7fffffffL) {
        saidx_t *sa = malloc(sizeof(saidx_t) * (size_t)(size > 0 ? size : 1));
        rc = sa ? divsufsort(text, sa, (saidx_t)size) : -2;
        free(sa);
    } else {
        saidx64_t *sa = malloc(sizeof(saidx64_t) * (size_t)size);
        rc = sa ? divsufsort64(text, sa, (saidx64_t)size) : -2;
        free(sa);
    }
    free(text);
    if (rc != 0) {
        fprintf(stderr, "divsufsort failed (%d)\n", rc);
        return 1;
    }
    return 0;
}
