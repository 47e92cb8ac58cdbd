/* Differential fuzzing of the stream fast path (src/llm/fastchunk.c) against
 * cJSON: whenever the scanner accepts a chunk, cJSON must parse it, see the
 * same shape and give the same content or arguments (fastchunk_oracle.h). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fastchunk_oracle.h"
#include "llm/fastchunk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *content = NULL;
    size_t clen = 0;
    sift_fastchunk f;
    if (sift_fastchunk_content((const char *)data, size, &content, &clen) &&
        !fastchunk_oracle((const char *)data, size, content, clen))
        abort();
    if (sift_fastchunk_read((const char *)data, size, &f) &&
        !fastchunk_oracle_read((const char *)data, size, &f))
        abort();
    return 0;
}
