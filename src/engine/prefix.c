/* prefix: longest-prefix slot choice with LRU eviction (see prefix.h). */
#include "engine/prefix.h"

#include <string.h>

size_t prefix_common(const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
    size_t n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

int prefix_choose(const struct prefix_slot *s, int n_slots, const int32_t *prompt,
                  size_t n_prompt, const char *tag, bool share_tags, size_t *hit)
{
    int best = -1, lru = -1;
    size_t best_hit = 0;
    *hit = 0;
    for (int i = 0; i < n_slots; i++) {
        if (s[i].busy)
            continue;
        if (lru < 0 || s[i].used < s[lru].used)
            lru = i;
        if (!share_tags && strcmp(s[i].tag ? s[i].tag : "", tag ? tag : ""))
            continue;
        size_t h = prefix_common(s[i].toks, s[i].n, prompt, n_prompt);
        if (h + 1 > n_prompt) /* the last prompt token is always fed */
            h = n_prompt ? n_prompt - 1 : 0;
        if (h > best_hit || (h == best_hit && h > 0 && s[i].used > s[best].used)) {
            best = i;
            best_hit = h;
        }
    }
    if (best < 0)
        return lru;
    *hit = best_hit;
    return best;
}
