/* libFuzzer target for the GGUF reader: gguf_open_memory on arbitrary bytes and, when
 * a file opens, a walk over every kv, array element and tensor byte through the public
 * accessors (which must never fail on a handle that opened). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "model/gguf.h"

static void walk(const struct gguf *g)
{
    for (int64_t i = 0; i < gguf_n_kv(g); i++) {
        const char *s;
        size_t len, nb;
        uint64_t u, n;
        int64_t v;
        double d;
        enum gguf_type et;
        if (!gguf_kv_key(g, i) || gguf_find_key(g, gguf_kv_key(g, i)) != i)
            abort();
        (void)gguf_kv_as_u64(g, i, &u);
        (void)gguf_kv_as_i64(g, i, &v);
        (void)gguf_kv_as_f64(g, i, &d);
        if (gguf_kv_as_str(g, i, &s, &len) && len && (s[0] ^ s[len - 1]) == 0x7f)
            d = 0; /* touch both ends */
        if (!gguf_kv_array(g, i, &et, &n))
            continue;
        const void *raw = gguf_arr_data(g, i, &nb);
        if (raw && nb && ((const uint8_t *)raw)[nb - 1] == 0x7f)
            d = 1;
        for (uint64_t j = 0; j < n; j++)
            if (!gguf_arr_str(g, i, j, &s, &len) && !gguf_arr_f64(g, i, j, &d))
                abort();
            else if (et == GGUF_TYPE_STRING && len && s[len - 1] == 0x7f)
                d = 2;
        (void)gguf_arr_i64(g, i, n, &v); /* one past the end: must just fail */
    }
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const struct gguf_tensor *t = gguf_tensor(g, i);
        if (gguf_find_tensor(g, t->name) != t)
            abort();
        volatile uint8_t x = 0;
        const uint8_t *p = t->data;
        if (t->nbytes)
            x ^= p[0] ^ p[t->nbytes - 1];
        (void)x;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gguf *g;
    struct err e;
    if (gguf_open_memory(data, size, "fuzz", &g, &e) == 0) {
        walk(g);
        gguf_close(g);
    } else if (!e.msg[0]) {
        abort(); /* every failure carries a message */
    }
    return 0;
}
