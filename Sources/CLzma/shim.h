#include <lzma.h>

/* Function-like macros that Swift does not import. */
static const lzma_vli phx_lzma_filter_lzma2 = LZMA_FILTER_LZMA2;
static const lzma_vli phx_lzma_vli_unknown = LZMA_VLI_UNKNOWN;
