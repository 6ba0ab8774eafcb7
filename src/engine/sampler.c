/* sampler: see sampler.h. */
#include "engine/sampler.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------- */
/* tcount: token -> count, open addressing with linear probing. Deleting a key
 * (count back to 0) shifts its followers back, so no tombstones pile up. */

#define TCOUNT_EMPTY (-1)

struct tcount {
    int32_t *keys;    /* [cap], TCOUNT_EMPTY when free */
    uint32_t *counts; /* [cap] */
    uint32_t cap;     /* a power of two */
    uint32_t shift;   /* 32 - log2(cap) */
    uint32_t n;       /* keys in use */
};

static int tcount_init(struct tcount *t, uint32_t cap)
{
    uint32_t log2cap = 0;
    while ((1u << log2cap) < cap)
        log2cap++;
    t->cap = 1u << log2cap;
    t->shift = 32 - log2cap;
    t->n = 0;
    t->keys = malloc(t->cap * sizeof *t->keys);
    t->counts = malloc(t->cap * sizeof *t->counts);
    if (!t->keys || !t->counts) {
        free(t->keys);
        free(t->counts);
        t->keys = NULL;
        t->counts = NULL;
        return ERR_NOMEM;
    }
    for (uint32_t i = 0; i < t->cap; i++)
        t->keys[i] = TCOUNT_EMPTY;
    return 0;
}

static void tcount_deinit(struct tcount *t)
{
    free(t->keys);
    free(t->counts);
    t->keys = NULL;
    t->counts = NULL;
}

static uint32_t tcount_home(const struct tcount *t, int32_t key)
{
    /* Fibonacci hashing; the high bits are the well-mixed ones. log2(cap) >= 1. */
    return ((uint32_t)key * 0x9E3779B1u) >> t->shift;
}

/* The slot holding key, or the free slot where it would go. */
static uint32_t tcount_find(const struct tcount *t, int32_t key)
{
    uint32_t mask = t->cap - 1, i = tcount_home(t, key);
    while (t->keys[i] != TCOUNT_EMPTY && t->keys[i] != key)
        i = (i + 1) & mask;
    return i;
}

static int tcount_grow(struct tcount *t)
{
    struct tcount bigger;
    int rc = tcount_init(&bigger, t->cap * 2);
    if (rc)
        return rc;
    for (uint32_t i = 0; i < t->cap; i++) {
        if (t->keys[i] == TCOUNT_EMPTY)
            continue;
        uint32_t j = tcount_find(&bigger, t->keys[i]);
        bigger.keys[j] = t->keys[i];
        bigger.counts[j] = t->counts[i];
    }
    bigger.n = t->n;
    tcount_deinit(t);
    *t = bigger;
    return 0;
}

static int tcount_inc(struct tcount *t, int32_t key)
{
    uint32_t i = tcount_find(t, key);
    if (t->keys[i] == key) {
        t->counts[i]++;
        return 0;
    }
    if ((t->n + 1) * 2 > t->cap) { /* keep the load at most 1/2 */
        int rc = tcount_grow(t);
        if (rc)
            return rc;
        i = tcount_find(t, key);
    }
    t->keys[i] = key;
    t->counts[i] = 1;
    t->n++;
    return 0;
}

static void tcount_dec(struct tcount *t, int32_t key)
{
    uint32_t mask = t->cap - 1, i = tcount_find(t, key);
    if (t->keys[i] != key || --t->counts[i] > 0)
        return;
    /* Backward-shift deletion: pull later members of the probe run into the hole
     * unless their home lies cyclically in (hole, j]. */
    for (uint32_t j = (i + 1) & mask; t->keys[j] != TCOUNT_EMPTY; j = (j + 1) & mask) {
        uint32_t h = tcount_home(t, t->keys[j]);
        bool stays = i <= j ? (h > i && h <= j) : (h > i || h <= j);
        if (!stays) {
            t->keys[i] = t->keys[j];
            t->counts[i] = t->counts[j];
            i = j;
        }
    }
    t->keys[i] = TCOUNT_EMPTY;
    t->n--;
}

/* ------------------------------------------------------------------------- */
/* PRNG: xoshiro256** (Blackman & Vigna), state filled by splitmix64. */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(uint64_t st[4])
{
    uint64_t result = rotl64(st[1] * 5, 7) * 9;
    uint64_t t = st[1] << 17;
    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = rotl64(st[3], 45);
    return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double xoshiro_uniform(uint64_t st[4])
{
    return (double)(xoshiro_next(st) >> 11) * 0x1.0p-53;
}

static uint64_t random_seed(void)
{
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, 0) == (ssize_t)sizeof seed)
        return seed;
    /* No getrandom (very old kernel, seccomp): a weaker but varying seed. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    x ^= (uint64_t)getpid() << 32;
    return splitmix64(&x);
}

/* ------------------------------------------------------------------------- */
/* Parameters. */

struct sampler_params sampler_params_default(void)
{
    return (struct sampler_params){
        .temperature = 1.0f,
        .top_k = 0,
        .top_p = 1.0f,
        .min_p = 0.0f,
        .repetition_penalty = 1.0f,
        .penalty_last_n = 64,
        .presence_penalty = 0.0f,
        .frequency_penalty = 0.0f,
        .has_seed = false,
        .seed = 0,
    };
}

/* lo_open: the range excludes lo. NaN fails every comparison, so it is rejected. */
static int check_float(const char *name, float v, float lo, bool lo_open, float hi,
                       struct err *err)
{
    bool ok = (lo_open ? v > lo : v >= lo) && v <= hi;
    if (ok)
        return 0;
    return err_set(err, ERR_RANGE, "%s: %g is out of range %c%g, %g]", name, (double)v,
                   lo_open ? '(' : '[', (double)lo, (double)hi);
}

int sampler_params_check(const struct sampler_params *p, struct err *err)
{
    int rc;
    if ((rc = check_float("temperature", p->temperature, 0.0f, false, 2.0f, err)) ||
        (rc = check_float("top_p", p->top_p, 0.0f, true, 1.0f, err)) ||
        (rc = check_float("min_p", p->min_p, 0.0f, false, 1.0f, err)) ||
        (rc = check_float("repetition_penalty", p->repetition_penalty, 0.0f, true, 10.0f,
                          err)) ||
        (rc = check_float("presence_penalty", p->presence_penalty, -2.0f, false, 2.0f, err)) ||
        (rc = check_float("frequency_penalty", p->frequency_penalty, -2.0f, false, 2.0f, err)))
        return rc;
    if (p->top_k < 0)
        return err_set(err, ERR_RANGE, "top_k: %d is out of range [0, inf)", (int)p->top_k);
    if (p->penalty_last_n < 0 || p->penalty_last_n > SAMPLER_LAST_N_MAX)
        return err_set(err, ERR_RANGE, "penalty_last_n: %d is out of range [0, %d]",
                       (int)p->penalty_last_n, SAMPLER_LAST_N_MAX);
    return 0;
}

/* ------------------------------------------------------------------------- */
/* The sampler. */

struct cand {
    float v; /* the logit, then exp((logit - best) / T): the unnormalised probability */
    int32_t id;
};

#define N_BUCKETS 1024 /* probability buckets for top_p: 8 per octave, 128 octaves */

struct sampler {
    struct sampler_params p;
    int32_t n_vocab;
    uint64_t seed;
    uint64_t rng[4];

    int32_t *ring; /* [p.penalty_last_n]: the repetition window, oldest at ring_head */
    int32_t ring_len, ring_head;
    struct tcount window;  /* counts of the tokens in ring */
    struct tcount history; /* counts of every sampler_accept'ed token */

    /* Without top_k, tokens more than `tail` below the best in logit / T are left
     * out: n_vocab * exp(-tail) = 1e-7, so all of them together are less likely
     * than 1e-7 times the best token, and the exps of a long tail are saved. */
    float tail;
    struct cand *cand;      /* [n_vocab] scratch */
    double mass[N_BUCKETS]; /* top_p scratch */
};

int sampler_new(const struct sampler_params *p, int32_t n_vocab, struct sampler **out,
                struct err *err)
{
    *out = NULL;
    int rc = sampler_params_check(p, err);
    if (rc)
        return rc;
    if (n_vocab <= 0)
        return err_set(err, ERR_RANGE, "sampler: n_vocab %d must be positive", (int)n_vocab);
    struct sampler *s = calloc(1, sizeof *s);
    if (!s)
        goto fail_nomem;
    s->p = *p;
    s->n_vocab = n_vocab;
    s->tail = logf((float)n_vocab) + 16.118f; /* e^-16.118 = 1e-7 */
    s->seed = p->has_seed ? p->seed : random_seed();
    uint64_t x = s->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->ring = malloc(((size_t)p->penalty_last_n + 1) * sizeof *s->ring);
    if (!s->cand || !s->ring)
        goto fail_sampler;
    /* Distinct tokens in the window never exceed penalty_last_n, so at load 1/2 the
     * window table never grows. */
    if (tcount_init(&s->window, 2 * (uint32_t)p->penalty_last_n + 2) ||
        tcount_init(&s->history, 256))
        goto fail_sampler;
    *out = s;
    return 0;

fail_sampler:
    sampler_free(s);
fail_nomem:
    return err_set(err, ERR_NOMEM, "sampler: out of memory for a vocabulary of %d",
                   (int)n_vocab);
}

void sampler_free(struct sampler *s)
{
    if (!s)
        return;
    tcount_deinit(&s->history);
    tcount_deinit(&s->window);
    free(s->ring);
    free(s->cand);
    free(s);
}

uint64_t sampler_seed(const struct sampler *s)
{
    return s->seed;
}

static void window_push(struct sampler *s, int32_t token)
{
    int32_t n = s->p.penalty_last_n;
    if (n == 0)
        return;
    if (s->ring_len == n) { /* drop the oldest first, so the table stays within n */
        tcount_dec(&s->window, s->ring[s->ring_head]);
        s->ring[s->ring_head] = token;
        s->ring_head = (s->ring_head + 1) % n;
    } else {
        s->ring[(s->ring_head + s->ring_len) % n] = token;
        s->ring_len++;
    }
    /* Cannot fail: the table was sized so that it never grows. */
    (void)tcount_inc(&s->window, token);
}

int sampler_accept(struct sampler *s, int32_t token)
{
    if (token < 0 || token >= s->n_vocab)
        return ERR_RANGE;
    int rc = tcount_inc(&s->history, token);
    if (rc)
        return rc;
    window_push(s, token);
    return 0;
}

int sampler_accept_prompt(struct sampler *s, const int32_t *tokens, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= s->n_vocab)
            return ERR_RANGE;
    /* Only the last penalty_last_n can stay in the window. */
    size_t first = n > (size_t)s->p.penalty_last_n ? n - (size_t)s->p.penalty_last_n : 0;
    for (size_t i = first; i < n; i++)
        window_push(s, tokens[i]);
    return 0;
}

/* Sampling steps. */

static void apply_penalties(const struct sampler *s, float *logits)
{
    float rep = s->p.repetition_penalty;
    if (rep != 1.0f) {
        const struct tcount *w = &s->window;
        for (uint32_t i = 0; i < w->cap; i++) {
            if (w->keys[i] == TCOUNT_EMPTY)
                continue;
            float *l = &logits[w->keys[i]];
            *l = *l > 0.0f ? *l / rep : *l * rep;
        }
    }
    float pres = s->p.presence_penalty, freq = s->p.frequency_penalty;
    if (pres != 0.0f || freq != 0.0f) {
        const struct tcount *h = &s->history;
        for (uint32_t i = 0; i < h->cap; i++) {
            if (h->keys[i] == TCOUNT_EMPTY)
                continue;
            logits[h->keys[i]] -= pres + freq * (float)h->counts[i];
        }
    }
}

/* Argmax, lowest id on ties; NaN never compares greater, so it is skipped. -1 when
 * no logit is above -inf. */
static int32_t greedy(const float *logits, int32_t n)
{
    int32_t best = -1;
    float best_v = -INFINITY;
    for (int32_t i = 0; i < n; i++) {
        if (logits[i] > best_v) {
            best_v = logits[i];
            best = i;
        }
    }
    return best;
}

/* NaN -> -inf, +inf -> FLT_MAX, so comparisons and differences are defined. */
static float sanitize(float v)
{
    if (isnan(v))
        return -INFINITY;
    return v > FLT_MAX ? FLT_MAX : v;
}

/* Does a rank before b? Higher value first, then lower id. */
static bool cand_before(const struct cand *a, const struct cand *b)
{
    return a->v > b->v || (a->v == b->v && a->id < b->id);
}

static int cand_cmp(const void *pa, const void *pb)
{
    const struct cand *a = pa, *b = pb;
    return cand_before(a, b) ? -1 : cand_before(b, a) ? 1 : 0;
}

/* Min-heap on rank (the root is the worst kept candidate). */
static void heap_sift_down(struct cand *h, int32_t n, int32_t i)
{
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && cand_before(&h[w], &h[l]))
            w = l;
        if (r < n && cand_before(&h[w], &h[r]))
            w = r;
        if (w == i)
            return;
        struct cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

static void heap_sift_up(struct cand *h, int32_t i)
{
    while (i > 0) {
        int32_t parent = (i - 1) / 2;
        if (!cand_before(&h[parent], &h[i]))
            return;
        struct cand t = h[i];
        h[i] = h[parent];
        h[parent] = t;
        i = parent;
    }
}

/* top_k: the k best logits into cand[0..k), best first, then each replaced by
 * exp((logit - best) / T). Sets *sum to the total. Returns k, or 0 when no logit is
 * above -inf. */
static int32_t select_top_k(struct sampler *s, const float *logits, double *sum)
{
    struct cand *cand = s->cand;
    int32_t len = 0, k = s->p.top_k;
    for (int32_t i = 0; i < s->n_vocab; i++) {
        if (len < k) {
            cand[len] = (struct cand){sanitize(logits[i]), i};
            heap_sift_up(cand, len++);
        } else if (logits[i] > cand[0].v && sanitize(logits[i]) > cand[0].v) {
            /* On a tie the root wins: its id is lower. NaN never gets here, and the
             * second test keeps a later +inf from beating an earlier one. */
            cand[0] = (struct cand){sanitize(logits[i]), i};
            heap_sift_down(cand, k, 0);
        }
    }
    qsort(cand, (size_t)len, sizeof *cand, cand_cmp);
    if (cand[0].v == -INFINITY)
        return 0;
    float max = cand[0].v, inv_t = 1.0f / s->p.temperature;
    *sum = 0.0;
    for (int32_t i = 0; i < len; i++) {
        cand[i].v = expf((cand[i].v - max) * inv_t);
        *sum += cand[i].v;
    }
    return len;
}

/* exp over a block. GNU C vector extensions (gcc, clang) lower this to SSE2 / NEON,
 * or to scalar code elsewhere; libm's expf does not vectorise and the 152k exps of a
 * full softmax would dominate sampling. Cody-Waite reduction y = k ln2 + r with
 * |r| <= ln2 / 2, then a degree-7 Taylor polynomial: relative error below 1e-7 for
 * -87 <= y <= 0 (checked against double exp). y < -87 and NaN give exp(-87).
 * Every lane does the same IEEE operations, so results do not depend on the ISA
 * (given no FMA contraction, which ISO C mode keeps off in gcc). */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
#define EXP_BLOCK 256 /* floats per block, a multiple of 4 */

static void exp_block(float *out, const float *in, int n /* a multiple of 4 */)
{
    const v4f lo = {-87.0f, -87.0f, -87.0f, -87.0f};
    for (int i = 0; i < n; i += 4) {
        v4f y;
        memcpy(&y, in + i, sizeof y);
        v4i ok = y >= lo; /* false for NaN */
        y = (v4f)((ok & (v4i)y) | (~ok & (v4i)lo));
        v4f k = (y * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round */
        v4f r = y - k * 0.693145751953125f;                              /* ln2 high */
        r = r - k * 1.428606765330187e-06f;                              /* ln2 low */
        v4f p = r * (1.0f / 5040) + (1.0f / 720);
        p = p * r + (1.0f / 120);
        p = p * r + (1.0f / 24);
        p = p * r + (1.0f / 6);
        p = p * r + 0.5f;
        p = p * r + 1.0f;
        p = p * r + 1.0f;
        v4i scale = (__builtin_convertvector(k, v4i) + 127) << 23; /* 2^k, k >= -126 */
        p = p * (v4f)scale;
        memcpy(out + i, &p, sizeof p);
    }
}

/* No top_k: every token within s->tail of the best (in logit / T) into cand, in id
 * order, with its exp((logit - best) / T); the best gets exactly 1. The tokens left
 * out hold less than 1e-7 of the mass together (see sampler_new). Sets *sum. */
static int32_t select_all(struct sampler *s, const float *logits, float max, double *sum)
{
    float y[EXP_BLOCK], p[EXP_BLOCK];
    float inv_t = 1.0f / s->p.temperature, floor_y = -s->tail;
    double total = 0.0;
    int32_t n = 0;
    max = max > FLT_MAX ? FLT_MAX : max;
    for (int32_t base = 0; base < s->n_vocab; base += EXP_BLOCK) {
        int m = s->n_vocab - base < EXP_BLOCK ? (int)(s->n_vocab - base) : EXP_BLOCK;
        int m4 = (m + 3) & ~3;
        for (int j = 0; j < m; j++) {
            float v = logits[base + j];
            y[j] = ((v > FLT_MAX ? FLT_MAX : v) - max) * inv_t;
        }
        for (int j = m; j < m4; j++)
            y[j] = 0.0f;
        exp_block(p, y, m4);
        for (int j = 0; j < m; j++) {
            if (y[j] >= floor_y) { /* false for NaN */
                s->cand[n++] = (struct cand){p[j], base + j};
                total += p[j];
            }
        }
    }
    *sum = total;
    return n;
}

/* Keeps candidates with p >= min_p (p_max is 1), in order. Returns the count. */
static int32_t filter_min_p(struct cand *cand, int32_t n, float min_p)
{
    int32_t kept = 0;
    for (int32_t i = 0; i < n; i++)
        if (cand[i].v >= min_p)
            cand[kept++] = cand[i];
    return kept;
}

/* Sums best-first cand[lo..n) onto *cum until it reaches target. Returns the
 * length of the nucleus: up to and including the token that reaches it. */
static int32_t nucleus_scan(const struct cand *cand, int32_t lo, int32_t n, double cum,
                            double target)
{
    for (int32_t i = lo; i < n; i++) {
        cum += cand[i].v;
        if (cum >= target)
            return i + 1;
    }
    return n;
}

/* Bucket of a probability in (0, 1] at a level: level 0 from the float's exponent and
 * top 3 mantissa bits (8 buckets per octave), level 1 from the next 10 mantissa bits
 * (within one level-0 bucket). Larger p, smaller bucket. */
static uint32_t prob_bucket(float p, int level)
{
    uint32_t bits;
    memcpy(&bits, &p, sizeof bits);
    uint32_t d = 0x3F800000u - bits;
    if (level == 1)
        return (d >> 10) & (N_BUCKETS - 1);
    return d >> 20 < N_BUCKETS ? d >> 20 : N_BUCKETS - 1;
}

/* Moves the candidates of cand[lo..hi) whose bucket is <= b to the front; returns
 * the end of that group. */
static int32_t partition_le(struct cand *cand, int32_t lo, int32_t hi, int level,
                            uint32_t b)
{
    int32_t m = lo;
    for (int32_t i = lo; i < hi; i++) {
        if (prob_bucket(cand[i].v, level) <= b) {
            struct cand t = cand[m];
            cand[m++] = cand[i];
            cand[i] = t;
        }
    }
    return m;
}

/* top_p on unsorted candidates without sorting them all: bucket the mass by
 * probability, find the bucket where the running mass reaches target, move the
 * buckets above it to the front and narrow to that boundary bucket; twice (the
 * second level splits one bucket 1024 ways), then sort only what is left in the
 * boundary and cut there. The nucleus ends up as a prefix of cand, unsorted
 * except for its last bucket. Returns its length. */
static int32_t nucleus_unsorted(struct sampler *s, int32_t n, double target)
{
    struct cand *cand = s->cand;
    int32_t lo = 0, hi = n;
    double cum = 0.0; /* the mass of cand[0..lo), all in the nucleus */
    for (int level = 0; level < 2; level++) {
        memset(s->mass, 0, sizeof s->mass);
        for (int32_t i = lo; i < hi; i++)
            s->mass[prob_bucket(cand[i].v, level)] += cand[i].v;
        uint32_t b = 0;
        while (cum + s->mass[b] < target && b + 1 < N_BUCKETS)
            cum += s->mass[b++];
        int32_t end = partition_le(cand, lo, hi, level, b);
        lo = b ? partition_le(cand, lo, end, level, b - 1) : lo;
        hi = end;
        if (level == 0 && b == N_BUCKETS - 1)
            break; /* the catch-all bucket is not split further */
    }
    qsort(cand + lo, (size_t)(hi - lo), sizeof *cand, cand_cmp);
    return nucleus_scan(cand, lo, hi, cum, target);
}

/* Draws one of cand[0..n) in proportion to its value; total is their sum. */
static int32_t draw(struct sampler *s, int32_t n, double total)
{
    double r = xoshiro_uniform(s->rng) * total, cum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        cum += s->cand[i].v;
        if (r < cum)
            return s->cand[i].id;
    }
    /* Rounding put r at the very end: the last candidate with any mass. */
    for (int32_t i = n - 1; i > 0; i--)
        if (s->cand[i].v > 0.0f)
            return s->cand[i].id;
    return s->cand[0].id;
}

int32_t sampler_sample(struct sampler *s, float *logits)
{
    const struct sampler_params *p = &s->p;
    apply_penalties(s, logits);
    bool sorted = p->top_k > 0 && p->top_k < s->n_vocab;
    double total;
    int32_t n;
    if (p->temperature == 0.0f || !sorted) {
        int32_t best = greedy(logits, s->n_vocab);
        if (best < 0 || p->temperature == 0.0f)
            return best < 0 ? ERR_RANGE : best;
        n = select_all(s, logits, logits[best], &total);
    } else {
        n = select_top_k(s, logits, &total);
        if (n == 0)
            return ERR_RANGE; /* no logit above -inf */
    }
    int32_t n_all = n;
    if (p->min_p > 0.0f)
        n = filter_min_p(s->cand, n, p->min_p); /* keeps the best: its p is 1 */
    if (p->top_p < 1.0f) {
        /* Measured on the whole softmax (total), so the result is the nucleus
         * intersected with the min_p set, as if top_p ran first. */
        double target = (double)p->top_p * total;
        n = sorted ? nucleus_scan(s->cand, 0, n, 0.0, target)
                   : nucleus_unsorted(s, n, target);
    }
    if (n != n_all) {
        total = 0.0;
        for (int32_t i = 0; i < n; i++)
            total += s->cand[i].v;
    }
    return draw(s, n, total);
}
