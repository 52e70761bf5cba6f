// The few ggml functions ggml-quants.c refers to outside its quantizers (tensor sizes, names,
// assertions), so that it links alone as a library for tests/data/make_quant_refs.py. None of
// them is reached by the reference quantizers the fixtures call.
#include <stddef.h>
#include <stdlib.h>

void ggml_abort(const char *file, int line, const char *fmt, ...) { abort(); }
size_t ggml_row_size(int type, long long ne) { abort(); }
size_t ggml_type_size(int type) { abort(); }
const char *ggml_type_name(int type) { abort(); }
