/* The repeat index's per-query work in C: a text's shingle hashes (triage.repeat.
 * shingle_hashes) and the search of one index segment (_Segment.search), which NumPy does
 * in some twenty and forty calls of a few microseconds each, whatever the size of their
 * small arrays. Same inputs, same answers (tests compare the two); the NumPy code stays as
 * the fallback when this module is not built.
 *
 * Arrays come in through the buffer protocol, so no NumPy headers are needed to build it.
 * The interpreter lock is released while searching: segments are immutable.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(addr) __builtin_prefetch((addr), 0, 1)
#else
#define PREFETCH(addr) ((void)0)
#endif

typedef struct {
    int64_t df;
    int64_t lo;
    Py_ssize_t order; /* position among the query's found shingles: ties keep query order */
} Probe;

typedef struct {
    int32_t doc;
    int32_t count;
} Cand;

static int probe_cmp(const void *a, const void *b) {
    const Probe *x = a, *y = b;
    if (x->df != y->df) return x->df < y->df ? -1 : 1;
    return x->order < y->order ? -1 : (x->order > y->order);
}

static int cand_by_count(const void *a, const void *b) { /* count desc, then doc asc */
    const Cand *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return x->doc < y->doc ? -1 : (x->doc > y->doc);
}

static int cand_by_doc(const void *a, const void *b) {
    const Cand *x = a, *y = b;
    return x->doc < y->doc ? -1 : (x->doc > y->doc);
}

/* Position of q among the sorted terms, or -1. With a bucket table (starts != NULL) the top
 * bits of q point at the first term of its bucket and a short walk forward finds it;
 * otherwise a binary search. */
static int64_t find_term(const uint32_t *terms, Py_ssize_t n_terms, const int64_t *starts,
                         int shift, uint32_t q) {
    if (starts != NULL) {
        int64_t p = starts[q >> shift];
        while (p < n_terms && terms[p] < q) p++;
        return (p < n_terms && terms[p] == q) ? p : -1;
    }
    Py_ssize_t lo = 0, hi = n_terms;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (terms[mid] < q) lo = mid + 1; else hi = mid;
    }
    return (lo < n_terms && terms[lo] == q) ? lo : -1;
}

static int get_buffer(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, int writable,
                      const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    if (view->itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s: expected items of %zd bytes, got %zd", name,
                     itemsize, view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Release the buffers of b[0..n) that were acquired (an unused slot has obj NULL). */
static void release_buffers(Py_buffer *b, int n) {
    for (int i = 0; i < n; i++)
        if (b[i].obj != NULL) PyBuffer_Release(&b[i]);
}

/* A text's code points (u32) and a writable output of at least `need` items: both acquired,
 * or neither (with the exception set). */
static int get_text_and_out(PyObject *o_cp, PyObject *o_out, Py_ssize_t out_itemsize,
                            Py_ssize_t (*need)(Py_ssize_t len, const void *arg),
                            const void *arg, Py_buffer b[2]) {
    if (get_buffer(o_cp, &b[0], 4, 0, "codepoints") < 0) return -1;
    if (get_buffer(o_out, &b[1], out_itemsize, 1, "out") < 0) {
        PyBuffer_Release(&b[0]);
        return -1;
    }
    if (b[1].len / out_itemsize < need(b[0].len / 4, arg)) {
        release_buffers(b, 2);
        PyErr_SetString(PyExc_ValueError, "out holds fewer items than there are n-grams");
        return -1;
    }
    return 0;
}

/* splitmix64's finaliser: spreads a polynomial hash over all 64 bits (as NumPy's _mix). */
static inline uint64_t mix64(uint64_t h) {
    h ^= h >> 30;
    h *= 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 27;
    h *= 0x94D049BB133111EBULL;
    return h ^ (h >> 31);
}

/* search(terms u32, ptr i64, docs i32, fwd_ptr i64, fwd u32, query u32, starts i64 | None,
 *        shift, probes, limit, least, out_docs i64[limit], out_inter i64[limit],
 *        out_sizes i64[limit]) -> number of candidates written (local ids, ascending). */
static PyObject *search(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *o_terms, *o_ptr, *o_docs, *o_fwd_ptr, *o_fwd, *o_query, *o_starts;
    PyObject *o_out_docs, *o_out_inter, *o_out_sizes;
    int shift;
    Py_ssize_t probes, limit, least;
    if (!PyArg_ParseTuple(args, "OOOOOOOinnnOOO", &o_terms, &o_ptr, &o_docs, &o_fwd_ptr, &o_fwd,
                          &o_query, &o_starts, &shift, &probes, &limit, &least, &o_out_docs,
                          &o_out_inter, &o_out_sizes))
        return NULL;
    Py_buffer b[10];
    int got = 0;
    PyObject *objs[10] = {o_terms, o_ptr, o_docs, o_fwd_ptr, o_fwd, o_query, o_starts,
                          o_out_docs, o_out_inter, o_out_sizes};
    const Py_ssize_t sizes[10] = {4, 8, 4, 8, 4, 4, 8, 8, 8, 8};
    const char *names[10] = {"terms", "ptr", "docs", "fwd_ptr", "fwd", "query", "starts",
                             "out_docs", "out_inter", "out_sizes"};
    int has_starts = o_starts != Py_None;
    for (int i = 0; i < 10; i++) {
        if (i == 6 && !has_starts) { memset(&b[i], 0, sizeof(Py_buffer)); continue; }
        if (get_buffer(objs[i], &b[i], sizes[i], i >= 7, names[i]) < 0) goto fail;
        got = i + 1;
    }
    got = 10;
    const uint32_t *terms = b[0].buf, *fwd = b[4].buf, *query = b[5].buf;
    const int64_t *ptr = b[1].buf, *fwd_ptr = b[3].buf;
    const int64_t *starts = has_starts ? b[6].buf : NULL;
    const int32_t *docs = b[2].buf;
    int64_t *out_docs = b[7].buf, *out_inter = b[8].buf, *out_sizes = b[9].buf;
    Py_ssize_t n_terms = b[0].len / 4, n_query = b[5].len / 4;
    if (b[7].len / 8 < limit || b[8].len / 8 < limit || b[9].len / 8 < limit) {
        PyErr_SetString(PyExc_ValueError, "output buffers hold fewer than limit items");
        goto fail;
    }
    if (shift < 0 || shift > 31) {
        PyErr_Format(PyExc_ValueError, "shift must be 0..31, got %d", shift);
        goto fail;
    }
    /* The segment's own invariants, checked once so that a damaged one raises instead of
     * reading out of bounds (each posting's case id is checked as it is read). */
    Py_ssize_t n_cases = b[3].len / 8 - 1;
    if (b[1].len / 8 != n_terms + 1 || n_cases < 0 || ptr[n_terms] > b[2].len / 4 ||
        fwd_ptr[n_cases] > b[4].len / 4 ||
        (has_starts && (uint64_t)(b[6].len / 8) <= (0xFFFFFFFFull >> shift))) {
        PyErr_SetString(PyExc_ValueError, "search: segment arrays of inconsistent sizes");
        goto fail;
    }

    Py_ssize_t written = 0;
    int oom = 0;
    Probe *found = NULL;
    int32_t *slot_doc = NULL, *slot_count = NULL;
    Cand *cands = NULL;
    Py_BEGIN_ALLOW_THREADS
    found = malloc(sizeof(Probe) * (n_query ? n_query : 1));
    if (found == NULL) { oom = 1; goto done; }
    Py_ssize_t n_found = 0;
    for (Py_ssize_t i = 0; i < n_query; i++) {
        int64_t p = find_term(terms, n_terms, starts, shift, query[i]);
        if (p >= 0) {
            found[n_found].lo = ptr[p];
            found[n_found].df = ptr[p + 1] - ptr[p];
            found[n_found].order = n_found;
            n_found++;
        }
    }
    if (n_found == 0) goto done;
    if (n_found > probes) {  /* the rarest shingles: fewest cases, ties in query order */
        qsort(found, n_found, sizeof(Probe), probe_cmp);
        n_found = probes;
    }
    /* Count hits per case in an open-addressing table sized to the postings read. */
    Py_ssize_t postings = 0;
    for (Py_ssize_t i = 0; i < n_found; i++) postings += found[i].df;
    size_t cap = 16;
    while (cap < (size_t)postings * 2) cap <<= 1;
    slot_doc = malloc(sizeof(int32_t) * cap);
    slot_count = calloc(cap, sizeof(int32_t));
    if (slot_doc == NULL || slot_count == NULL) { oom = 1; goto done; }
    Py_ssize_t n_cands = 0;
    for (Py_ssize_t i = 0; i < n_found; i++) {
        const int32_t *d = docs + found[i].lo;
        for (int64_t j = 0; j < found[i].df; j++) {
            if (d[j] < 0 || d[j] >= n_cases) continue;
            uint32_t h = (uint32_t)d[j] * 0x9E3779B1u;
            size_t s = h & (cap - 1);
            while (slot_count[s] && slot_doc[s] != d[j]) s = (s + 1) & (cap - 1);
            if (!slot_count[s]) { slot_doc[s] = d[j]; n_cands++; }
            slot_count[s]++;
        }
    }
    cands = malloc(sizeof(Cand) * (n_cands ? n_cands : 1));
    if (cands == NULL) { oom = 1; goto done; }
    Py_ssize_t kept = 0;
    for (size_t s = 0; s < cap; s++) {
        if (slot_count[s] >= least) {
            cands[kept].doc = slot_doc[s];
            cands[kept].count = slot_count[s];
            kept++;
        }
    }
    if (kept > limit) {  /* the cases hitting most probes, ties by local id */
        qsort(cands, kept, sizeof(Cand), cand_by_count);
        kept = limit;
    }
    qsort(cands, kept, sizeof(Cand), cand_by_doc);
    /* Exact |query ∩ case| by merging two sorted unique lists. */
    for (Py_ssize_t c = 0; c < kept; c++) {
        int64_t lo = fwd_ptr[cands[c].doc], hi = fwd_ptr[cands[c].doc + 1];
        Py_ssize_t i = 0, inter = 0;
        int64_t j = lo;
        while (i < n_query && j < hi) {
            uint32_t a = query[i], v = fwd[j];
            if (a < v) i++;
            else if (v < a) j++;
            else { inter++; i++; j++; }
        }
        out_docs[c] = cands[c].doc;
        out_inter[c] = inter;
        out_sizes[c] = hi - lo;
    }
    written = kept;
done:
    free(found);
    free(slot_doc);
    free(slot_count);
    free(cands);
    Py_END_ALLOW_THREADS
    release_buffers(b, got);
    if (oom) return PyErr_NoMemory();
    return PyLong_FromSsize_t(written);
fail:
    release_buffers(b, got);
    return NULL;
}

/* Sort uint32 values: LSD radix sort, 8 bits a pass (a few hundred values per text). */
static void radix_sort_u32(uint32_t *a, uint32_t *tmp, Py_ssize_t n) {
    for (int shift = 0; shift < 32; shift += 8) {
        Py_ssize_t count[257] = {0};
        for (Py_ssize_t i = 0; i < n; i++) count[((a[i] >> shift) & 0xFF) + 1]++;
        for (int k = 0; k < 256; k++) count[k + 1] += count[k];
        for (Py_ssize_t i = 0; i < n; i++) tmp[count[(a[i] >> shift) & 0xFF]++] = a[i];
        memcpy(a, tmp, sizeof(uint32_t) * n);
    }
}

/* shingles(codepoints u32, n, out u32[len - n + 1]) -> count: the sorted unique 32-bit hashes
 * of every n-gram, as triage.repeat.shingle_hashes computes them with NumPy. */
static Py_ssize_t shingles_needed(Py_ssize_t len, const void *n) {
    Py_ssize_t m = len - *(const int *)n + 1;
    return m > 0 ? m : 0;
}

static PyObject *shingles(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *o_cp, *o_out;
    int n;
    if (!PyArg_ParseTuple(args, "OiO", &o_cp, &n, &o_out)) return NULL;
    if (n < 1) {
        PyErr_Format(PyExc_ValueError, "n must be >= 1, got %d", n);
        return NULL;
    }
    Py_buffer b[2];
    if (get_text_and_out(o_cp, o_out, 4, shingles_needed, &n, b) < 0) return NULL;
    const uint32_t *cp = b[0].buf;
    uint32_t *out = b[1].buf;
    Py_ssize_t m = shingles_needed(b[0].len / 4, &n), written = 0;
    int oom = 0;
    if (m > 0) {
        uint32_t *tmp = malloc(sizeof(uint32_t) * m);
        if (tmp == NULL) {
            oom = 1;
        } else {
            for (Py_ssize_t i = 0; i < m; i++) {
                uint64_t h = (uint64_t)n;
                for (int j = 0; j < n; j++) h = (h ^ cp[i + j]) * 0x9E3779B97F4A7C15ULL;
                out[i] = (uint32_t)(mix64(h) >> 32);
            }
            radix_sort_u32(out, tmp, m);
            free(tmp);
            written = 1;
            for (Py_ssize_t i = 1; i < m; i++)
                if (out[i] != out[written - 1]) out[written++] = out[i];
        }
    }
    release_buffers(b, 2);
    if (oom) return PyErr_NoMemory();
    return PyLong_FromSsize_t(written);
}

/* view_scores(hashes u64, keys u64 (sorted, + a max sentinel), starts i32|i64, shift,
 *             idf f32, weights_t f32 (n_features x k, C order), k, out f32[k]) -> terms found
 *
 * One document's scores on one feature view, as triage.features._view_scores computes them
 * for one document: each n-gram hash looked up in the sorted vocabulary through its bucket
 * table, term counts, sublinear tf x idf, L2 normalisation, then the weights' dot product.
 * Sums run in double (NumPy's float32 BLAS sums differ from them by float32 rounding). */
static PyObject *view_scores(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *o_hashes, *o_keys, *o_starts, *o_idf, *o_w, *o_out;
    int shift;
    Py_ssize_t k;
    if (!PyArg_ParseTuple(args, "OOOiOOnO", &o_hashes, &o_keys, &o_starts, &shift, &o_idf, &o_w,
                          &k, &o_out))
        return NULL;
    Py_buffer vb[6];
    int got = 0;
    if (get_buffer(o_hashes, &vb[0], 8, 0, "hashes") < 0) goto fail;
    got = 1;
    if (get_buffer(o_keys, &vb[1], 8, 0, "keys") < 0) goto fail;
    got = 2;
    if (PyObject_GetBuffer(o_starts, &vb[2], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto fail;
    got = 3;
    if (vb[2].itemsize != 4 && vb[2].itemsize != 8) {
        PyErr_Format(PyExc_TypeError, "starts: expected 4- or 8-byte integers, got %zd bytes",
                     vb[2].itemsize);
        goto fail;
    }
    if (get_buffer(o_idf, &vb[3], 4, 0, "idf") < 0) goto fail;
    got = 4;
    if (get_buffer(o_w, &vb[4], 4, 0, "weights_t") < 0) goto fail;
    got = 5;
    if (get_buffer(o_out, &vb[5], 4, 1, "out") < 0) goto fail;
    got = 6;
    Py_ssize_t n_hash = vb[0].len / 8, n_keys = vb[1].len / 8 - 1, n_starts = vb[2].len / vb[2].itemsize;
    if (k <= 0 || vb[5].len / 4 < k || vb[3].len / 4 < n_keys || vb[4].len / 4 < n_keys * k ||
        n_keys < 0 || shift < 0 || shift > 63 ||
        (n_keys > 0 && (n_starts < 1 || (uint64_t)(n_starts - 1) < (UINT64_MAX >> shift)))) {
        PyErr_SetString(PyExc_ValueError, "view_scores: arrays of inconsistent sizes");
        goto fail;
    }
    const uint64_t *hashes = vb[0].buf, *keys = vb[1].buf;
    if (keys[n_keys] != UINT64_MAX) {  /* the walk below stops at this sentinel */
        PyErr_SetString(PyExc_ValueError, "view_scores: keys must end with 2**64 - 1");
        goto fail;
    }
    const float *idf = vb[3].buf, *w = vb[4].buf;
    float *out = vb[5].buf;
    const int32_t *starts32 = vb[2].itemsize == 4 ? vb[2].buf : NULL;
    const int64_t *starts64 = vb[2].itemsize == 8 ? vb[2].buf : NULL;
    Py_ssize_t found = 0;
    int oom = 0;
    uint32_t *cols = NULL, *tmp = NULL;
    double *acc = NULL;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t j = 0; j < k; j++) out[j] = 0.0f;
    if (n_hash == 0 || n_keys == 0) goto done;
    cols = malloc(sizeof(uint32_t) * n_hash);
    tmp = malloc(sizeof(uint32_t) * n_hash);
    acc = calloc(k, sizeof(double));
    if (cols == NULL || tmp == NULL || acc == NULL) { oom = 1; goto done; }
    /* The vocabulary, its bucket table, idf and weights are tens of MB, and every n-gram
     * reads a random place in each: nearly every read misses the cache. Read in stages,
     * each stage prefetching what the next one reads for every n-gram, so that the misses
     * overlap instead of following one another (the loops below read the same values). */
    for (Py_ssize_t i = 0; i < n_hash; i++) {
        uint64_t b = hashes[i] >> shift;
        if (starts32) PREFETCH(&starts32[b]); else PREFETCH(&starts64[b]);
    }
    for (Py_ssize_t i = 0; i < n_hash; i++) {  /* cols[i]: where the walk of n-gram i starts */
        uint64_t b = hashes[i] >> shift;
        int64_t p = starts32 ? starts32[b] : starts64[b];
        cols[i] = (uint32_t)p;
        PREFETCH(&keys[p]);
    }
    for (Py_ssize_t i = 0; i < n_hash; i++) {
        uint64_t h = hashes[i];
        int64_t p = cols[i];  /* i >= found: not overwritten yet */
        while (keys[p] < h) p++;  /* the sentinel (max) stops the walk */
        if (keys[p] == h && p < n_keys) cols[found++] = (uint32_t)p;
    }
    if (found == 0) goto done;
    radix_sort_u32(cols, tmp, found);
    for (Py_ssize_t i = 0; i < found; i++) PREFETCH(&idf[cols[i]]);
    /* tmp now holds the data values (as floats), one per distinct column */
    float *data = (float *)tmp;
    Py_ssize_t n_unique = 0;
    double sumsq = 0.0;
    for (Py_ssize_t i = 0; i < found;) {
        Py_ssize_t j = i + 1;
        while (j < found && cols[j] == cols[i]) j++;
        float d = (logf((float)(j - i)) + 1.0f) * idf[cols[i]];
        cols[n_unique] = cols[i];
        data[n_unique++] = d;
        sumsq += (double)d * d;
        i = j;
    }
    float norm = (float)sqrt(sumsq);
    for (Py_ssize_t u = 0; u < n_unique; u++) {
        const char *row = (const char *)(w + (size_t)cols[u] * k);
        PREFETCH(row);
        PREFETCH(row + (size_t)k * sizeof(float) - 1);  /* a row may straddle two lines */
    }
    for (Py_ssize_t u = 0; u < n_unique; u++) {
        double d = data[u] / norm;
        const float *row = w + (size_t)cols[u] * k;
        for (Py_ssize_t j = 0; j < k; j++) acc[j] += row[j] * d;
    }
    for (Py_ssize_t j = 0; j < k; j++) out[j] = (float)acc[j];
done:
    free(cols);
    free(tmp);
    free(acc);
    Py_END_ALLOW_THREADS
    release_buffers(vb, got);
    if (oom) return PyErr_NoMemory();
    return PyLong_FromSsize_t(found);
fail:
    release_buffers(vb, got);
    return NULL;
}

/* char_ngrams(codepoints u32, lo, hi, out u64) -> count: the hashes of every character
 * n-gram (lo <= n <= hi) of one document without a code point <= 32 (space, separators), all
 * 1-grams first, then 2-grams ..., in text order: triage.features.char_ngram_hashes. */
static Py_ssize_t ngrams_needed(Py_ssize_t len, const void *range) {
    const int *r = range;
    Py_ssize_t need = 0;
    for (int n = r[0]; n <= r[1]; n++) need += len - n + 1 > 0 ? len - n + 1 : 0;
    return need;
}

static PyObject *char_ngrams(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *o_cp, *o_out;
    int lo, hi;
    if (!PyArg_ParseTuple(args, "OiiO", &o_cp, &lo, &hi, &o_out)) return NULL;
    if (lo < 1 || hi < lo || hi > 16) {
        PyErr_Format(PyExc_ValueError, "expected 1 <= lo <= hi <= 16, got %d, %d", lo, hi);
        return NULL;
    }
    int range[2] = {lo, hi};
    Py_buffer b[2];
    if (get_text_and_out(o_cp, o_out, 8, ngrams_needed, range, b) < 0) return NULL;
    const uint32_t *cp = b[0].buf;
    uint64_t *out = b[1].buf;
    Py_ssize_t len = b[0].len / 4, written = 0;
    const uint64_t P = 0x100000001B3ULL, SALT = 0x9E3779B97F4A7C15ULL;
    for (int n = lo; n <= hi; n++) {
        for (Py_ssize_t i = 0; i + n <= len; i++) {
            uint64_t h = 0;
            int ok = 1;
            for (int j = 0; j < n; j++) {
                if (cp[i + j] <= 32) { ok = 0; break; }
                h = h * P + cp[i + j];
            }
            if (ok) out[written++] = mix64(h + (uint64_t)n * SALT);
        }
    }
    release_buffers(b, 2);
    return PyLong_FromSsize_t(written);
}

/* merge(a_gids i64, a_fwd_ptr i64, a_fwd u32, a_terms u32, a_ptr i64, a_docs i32, b_... (6 more),
 *       alive u8 (by global id), out_gids i64, out_fwd_ptr i64, out_fwd u32, out_terms u32,
 *       out_ptr i64, out_docs i32) -> (cases, shingles, terms, postings)
 *
 * The live cases of two index segments as one (triage.repeat._Segment.merge): a's cases,
 * then b's, renumbered; the inverted lists merged term by term in one linear pass, with the
 * interpreter lock released, where NumPy packs, stably sorts and unpacks every posting. */
static PyObject *merge(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *o[19];
    if (!PyArg_UnpackTuple(args, "merge", 19, 19, &o[0], &o[1], &o[2], &o[3], &o[4], &o[5],
                           &o[6], &o[7], &o[8], &o[9], &o[10], &o[11], &o[12], &o[13], &o[14],
                           &o[15], &o[16], &o[17], &o[18]))
        return NULL;
    static const Py_ssize_t size[19] = {8, 8, 4, 4, 8, 4, 8, 8, 4, 4, 8, 4, 1, 8, 8, 4, 4, 8, 4};
    static const char *name[19] = {"a_gids", "a_fwd_ptr", "a_fwd", "a_terms", "a_ptr", "a_docs",
                                   "b_gids", "b_fwd_ptr", "b_fwd", "b_terms", "b_ptr", "b_docs",
                                   "alive", "out_gids", "out_fwd_ptr", "out_fwd", "out_terms",
                                   "out_ptr", "out_docs"};
    Py_buffer b[19];
    int got = 0;
    for (int i = 0; i < 19; i++) {
        if (get_buffer(o[i], &b[i], size[i], i >= 13, name[i]) < 0) goto fail;
        got = i + 1;
    }
    const int64_t *gids[2] = {b[0].buf, b[6].buf}, *fptr[2] = {b[1].buf, b[7].buf};
    const int64_t *tptr[2] = {b[4].buf, b[10].buf};
    const uint32_t *fwd[2] = {b[2].buf, b[8].buf}, *terms[2] = {b[3].buf, b[9].buf};
    const int32_t *docs[2] = {b[5].buf, b[11].buf};
    const uint8_t *alive = b[12].buf;
    Py_ssize_t n[2] = {b[0].len / 8, b[6].len / 8}, v[2] = {b[3].len / 4, b[9].len / 4};
    Py_ssize_t n_alive = b[12].len;
    int64_t *out_gids = b[13].buf, *out_fptr = b[14].buf, *out_ptr = b[17].buf;
    uint32_t *out_fwd = b[15].buf, *out_terms = b[16].buf;
    int32_t *out_docs = b[18].buf;
    int bad = 0;
    for (int s = 0; s < 2; s++) {
        if (b[1 + 6 * s].len / 8 != n[s] + 1 || b[4 + 6 * s].len / 8 != v[s] + 1) bad = 1;
        else if (fptr[s][n[s]] > b[2 + 6 * s].len / 4 || tptr[s][v[s]] > b[5 + 6 * s].len / 4)
            bad = 1;
        for (Py_ssize_t i = 0; !bad && i < n[s]; i++)
            if (gids[s][i] < 0 || gids[s][i] >= n_alive) bad = 1;
    }
    if (!bad && (b[13].len / 8 < n[0] + n[1] || b[14].len / 8 < n[0] + n[1] + 1 ||
                 b[15].len / 4 < fptr[0][n[0]] + fptr[1][n[1]] ||
                 b[16].len / 4 < v[0] + v[1] || b[17].len / 8 < v[0] + v[1] + 1 ||
                 b[18].len / 4 < tptr[0][v[0]] + tptr[1][v[1]]))
        bad = 1;
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "merge: arrays of inconsistent sizes");
        goto fail;
    }
    int32_t *renum[2] = {NULL, NULL};
    Py_ssize_t cases = 0, shingles = 0, nt = 0, np_ = 0;
    int oom = 0;
    Py_BEGIN_ALLOW_THREADS
    renum[0] = malloc(sizeof(int32_t) * (n[0] ? n[0] : 1));
    renum[1] = malloc(sizeof(int32_t) * (n[1] ? n[1] : 1));
    if (renum[0] == NULL || renum[1] == NULL) { oom = 1; goto done; }
    out_fptr[0] = 0;
    for (int s = 0; s < 2; s++) {
        for (Py_ssize_t i = 0; i < n[s]; i++) {
            if (!alive[gids[s][i]]) { renum[s][i] = -1; continue; }
            renum[s][i] = (int32_t)cases;
            out_gids[cases] = gids[s][i];
            int64_t lo = fptr[s][i], len = fptr[s][i + 1] - lo;
            memcpy(out_fwd + shingles, fwd[s] + lo, sizeof(uint32_t) * len);
            shingles += len;
            out_fptr[++cases] = shingles;
        }
    }
    Py_ssize_t i0 = 0, i1 = 0;
    while (i0 < v[0] || i1 < v[1]) {
        uint32_t t;
        int in0 = 0, in1 = 0;
        if (i1 >= v[1] || (i0 < v[0] && terms[0][i0] <= terms[1][i1])) {
            t = terms[0][i0];
            in0 = 1;
            in1 = i1 < v[1] && terms[1][i1] == t;
        } else {
            t = terms[1][i1];
            in1 = 1;
        }
        Py_ssize_t start = np_;
        if (in0) {
            for (int64_t j = tptr[0][i0]; j < tptr[0][i0 + 1]; j++) {
                int32_t d = docs[0][j];  /* a local id out of range counts as removed */
                if (d >= 0 && d < n[0] && renum[0][d] >= 0) out_docs[np_++] = renum[0][d];
            }
            i0++;
        }
        if (in1) {
            for (int64_t j = tptr[1][i1]; j < tptr[1][i1 + 1]; j++) {
                int32_t d = docs[1][j];  /* a local id out of range counts as removed */
                if (d >= 0 && d < n[1] && renum[1][d] >= 0) out_docs[np_++] = renum[1][d];
            }
            i1++;
        }
        if (np_ > start) {
            out_terms[nt] = t;
            out_ptr[nt++] = start;
        }
    }
    out_ptr[nt] = np_;
done:
    free(renum[0]);
    free(renum[1]);
    Py_END_ALLOW_THREADS
    release_buffers(b, got);
    if (oom) return PyErr_NoMemory();
    return Py_BuildValue("nnnn", cases, shingles, nt, np_);
fail:
    release_buffers(b, got);
    return NULL;
}

static PyMethodDef methods[] = {
    {"merge", merge, METH_VARARGS,
     "merge(a's 6 arrays, b's 6 arrays, alive, 6 output arrays) -> (cases, shingles, terms, "
     "postings): two index segments' live cases as one."},
    {"char_ngrams", char_ngrams, METH_VARARGS,
     "char_ngrams(codepoints, lo, hi, out) -> count: one document's character n-gram hashes."},
    {"view_scores", view_scores, METH_VARARGS,
     "view_scores(hashes, keys, starts, shift, idf, weights_t, k, out) -> terms found: one "
     "document's scores on one feature view."},
    {"shingles", shingles, METH_VARARGS,
     "shingles(codepoints, n, out) -> count: sorted unique n-gram hashes written to out."},
    {"search", search, METH_VARARGS,
     "search(terms, ptr, docs, fwd_ptr, fwd, query, starts, shift, probes, limit, least, "
     "out_docs, out_inter, out_sizes) -> n: candidates of one segment, verified."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels",
                                    "C kernels of the repeat index and the feature scores.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
