/* Combo loss's softmax sums, forward and backward, fused in one pass over the logits each (CPU, float32): speeds up
 * Combo (losses/combo.py) on the CPU, eager; built and loaded by combo_cpu.py. Measured in BENCHMARKS.md, "Loss cost,
 * eager" ("Why Combo has a fused CPU kernel").
 *
 * The same sums and gradient as SoftmaxForegroundSums in losses/combo.py (Taghanaki et al. (CMIG 2019), eq. 5; eq. 3
 * of the arXiv preprint): with p = softmax(x), t the one-hot labels, m the mask, over the foreground channels c >= 1,
 *   pos = sum m t_c ln p_c,  neg = sum m (1 - t_c) ln(1 - p_c),  inter[b, c] = sum m p_c t_c,  sum_p[b, c] = sum m p_c
 * and, for the Dice, counts[b, c] = sum m t_c.
 * ln(1 - p_c) is log1p(-p_c) for every channel but a unique maximum d (where p_c < 1/2); at d it is
 * ln(sum_{k != d} e^{x_k - x_d}) - ln(sum_k e^{x_k - x_d}), the first sum taken relative to the runner-up logit
 * when it would leave float32's normal range (gap > ~69). The backward recomputes p from the logits (nothing
 * full-size is saved) and uses, per voxel, with a = g_pos t, b_c = g_neg (1 - t_c), rho_c = p_c / (1 - p_c)
 * (0 at the unique maximum) and gamma_c = g_inter[c] t_c + g_sum_p[c]:
 *   d/dx_j = m [a t_j - b_j rho_j + gamma_j p_j + p_j (sum_c b_c rho_c - a - sum_c gamma_c p_c)]
 *            + m b_d [j == d ? -p_d : p_d p_j / (1 - p_d)]   (d the unique maximum, a foreground class but the label)
 * Voxels go in blocks of BLOCK, channel by channel, so that the compiler vectorises every loop (glibc's libmvec
 * supplies the vector expf, logf and log1pf). Sums: float32 within a block, float64 across blocks, in a fixed order
 * for a given number of threads.
 */
#include <stdint.h>
#include <stdlib.h>
#include <omp.h>

__attribute__((simd("notinbranch"))) float expf(float);
__attribute__((simd("notinbranch"))) float logf(float);
__attribute__((simd("notinbranch"))) float log1pf(float);

#define BLOCK 512
#define TINY 1e-30f /* below this the sum of the non-maximum terms is recomputed from the runner-up */

typedef struct {
    float *p;       /* (C, BLOCK): softmax */
    float *top;     /* max logit */
    float *n_top;   /* number of channels at the max */
    float *d;       /* first channel at the max */
    float *s;       /* sum_k e^{x_k - top} */
    float *ln_s;    /* ln s */
    float *rest;    /* sum over channels below the max of e^{x_k - top}, or its rescaled form (see fix_tiny) */
    float *ln_rest; /* ln(1 - p_d) + ln s where the max is unique */
    float *ref;     /* top, or the runner-up logit where the sum below the max left the normal range */
    float *scale;   /* q_j = p_j / (1 - p_d) = e^{x_j - ref} * scale for j != d */
    float *x_l;     /* logit of the label */
    float *lab;     /* label, as float */
    float *w;       /* mask, 1 without */
    float *tn;      /* 1 where the max is unique and a foreground class other than the label */
} Work;

static float *alloc_floats(int64_t n) { return (float *)aligned_alloc(64, (size_t)n * sizeof(float)); }

static int work_init(Work *k, int64_t channels) {
    float **fields[] = {&k->top, &k->n_top, &k->d, &k->s, &k->ln_s, &k->rest, &k->ln_rest, &k->ref, &k->scale,
                        &k->x_l, &k->lab, &k->w, &k->tn};
    k->p = alloc_floats(channels * BLOCK);
    int ok = k->p != NULL;
    for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
        *fields[f] = alloc_floats(BLOCK);
        ok = ok && *fields[f] != NULL;
    }
    return ok;
}

static void work_free(Work *k) {
    float *fields[] = {k->p, k->top, k->n_top, k->d, k->s, k->ln_s, k->rest, k->ln_rest, k->ref, k->scale, k->x_l,
                       k->lab, k->w, k->tn};
    for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) free(fields[f]);
}

/* The softmax of one block and everything per voxel that the sums and the gradient need. */
static void softmax_block(Work *k, const float *x, const int64_t *labels, const float *mask, int64_t n_vox,
                          int64_t channels, int64_t len) {
    float *restrict top = k->top, *restrict n_top = k->n_top, *restrict d = k->d, *restrict s = k->s;
    float *restrict rest = k->rest, *restrict x_l = k->x_l, *restrict lab = k->lab, *restrict w = k->w;
#pragma omp simd
    for (int64_t i = 0; i < len; i++) {
        top[i] = x[i];
        lab[i] = (float)labels[i];
        w[i] = mask ? mask[i] : 1.0f;
        n_top[i] = 0.0f;
        d[i] = 0.0f;
        s[i] = 0.0f;
        rest[i] = 0.0f;
        x_l[i] = 0.0f;
    }
    for (int64_t c = 1; c < channels; c++) {
        const float *restrict xc = x + c * n_vox;
#pragma omp simd
        for (int64_t i = 0; i < len; i++) top[i] = xc[i] > top[i] ? xc[i] : top[i];
    }
    for (int64_t c = channels - 1; c >= 0; c--) {
        const float *restrict xc = x + c * n_vox;
        float *restrict pc = k->p + c * BLOCK;
        const float fc = (float)c;
#pragma omp simd
        for (int64_t i = 0; i < len; i++) {
            const float e = expf(xc[i] - top[i]);
            const int at_top = xc[i] == top[i];
            pc[i] = e;
            s[i] += e;
            rest[i] += at_top ? 0.0f : e;
            n_top[i] += at_top ? 1.0f : 0.0f;
            d[i] = at_top ? fc : d[i]; /* the loop runs downwards: the first channel at the max wins */
            x_l[i] = lab[i] == fc ? xc[i] : x_l[i];
        }
    }
    float *restrict ln_s = k->ln_s, *restrict ln_rest = k->ln_rest, *restrict scale = k->scale, *restrict tn = k->tn;
    float *restrict ref = k->ref;
#pragma omp simd
    for (int64_t i = 0; i < len; i++) {
        ln_s[i] = logf(s[i]);
        ref[i] = top[i];
        const int unique = n_top[i] == 1.0f;
        tn[i] = (unique && d[i] >= 1.0f && d[i] != lab[i]) ? 1.0f : 0.0f;
        const float r = unique && rest[i] >= TINY ? rest[i] : 1.0f;
        ln_rest[i] = logf(r);
        scale[i] = 1.0f / r;
    }
    for (int64_t i = 0; i < len; i++) { /* rare: a unique max more than ~69 above every other logit */
        if (n_top[i] != 1.0f || rest[i] >= TINY) continue;
        float runner = -__builtin_inff();
        for (int64_t c = 0; c < channels; c++) {
            const float v = x[c * n_vox + i];
            if (v != top[i] && v > runner) runner = v;
        }
        float sum = 0.0f; /* >= 1: the runner-up's own term */
        for (int64_t c = 0; c < channels; c++) {
            const float v = x[c * n_vox + i];
            if (v != top[i]) sum += expf(v - runner);
        }
        ln_rest[i] = logf(sum) + (runner - top[i]);
        ref[i] = runner;
        scale[i] = 1.0f / sum;
    }
    for (int64_t c = 0; c < channels; c++) {
        float *restrict pc = k->p + c * BLOCK;
#pragma omp simd
        for (int64_t i = 0; i < len; i++) pc[i] /= s[i];
    }
}

/* Block blk of the batch (blocks of BLOCK voxels, sample by sample) through softmax_block; returns its length and
 * sets its sample b and first voxel start. */
static int64_t load_block(Work *k, const float *x, const int64_t *labels, const float *mask, int64_t channels,
                          int64_t n_vox, int64_t blk, int64_t *b, int64_t *start) {
    const int64_t blocks_per_sample = (n_vox + BLOCK - 1) / BLOCK;
    *b = blk / blocks_per_sample;
    *start = (blk % blocks_per_sample) * BLOCK;
    const int64_t len = n_vox - *start < BLOCK ? n_vox - *start : BLOCK, vox = *b * n_vox + *start;
    softmax_block(k, x + *b * channels * n_vox + *start, labels + vox, mask ? mask + vox : NULL, n_vox, channels,
                  len);
    return len;
}

/* Forward: sums = [pos, neg, inter (B, C), sum_p (B, C), counts (B, C)] in doubles, channel 0 left at 0; counts is
 * sum m t_c (the Dice's sum of t). Returns 0, or 1 when memory ran out. */
int combo_forward(const float *x, const int64_t *labels, const float *mask, int64_t batch, int64_t channels,
                   int64_t n_vox, int threads, double *sums) {
    const int64_t blocks = batch * ((n_vox + BLOCK - 1) / BLOCK);
    const int64_t per_thread = 2 + 3 * batch * channels, bc = batch * channels;
    double *acc = calloc((size_t)threads * per_thread, sizeof(double));
    if (acc == NULL) return 1;
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        Work k;
        const int ok = work_init(&k, channels);
        double *mine = acc + omp_get_thread_num() * per_thread;
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < blocks; blk++) {
            if (!ok) continue;
            int64_t b, start;
            const int64_t len = load_block(&k, x, labels, mask, channels, n_vox, blk, &b, &start);
            float pos = 0.0f, neg = 0.0f;
#pragma omp simd reduction(+ : pos, neg)
            for (int64_t i = 0; i < len; i++) {
                pos += k.lab[i] >= 1.0f ? k.w[i] * (k.x_l[i] - k.top[i] - k.ln_s[i]) : 0.0f;
                neg += k.tn[i] * k.w[i] * (k.ln_rest[i] - k.ln_s[i]);
            }
            for (int64_t c = 1; c < channels; c++) {
                const float *restrict pc = k.p + c * BLOCK;
                const float fc = (float)c;
                float ln_1mp = 0.0f, in = 0.0f, sp = 0.0f, count = 0.0f;
#pragma omp simd reduction(+ : ln_1mp, in, sp, count)
                for (int64_t i = 0; i < len; i++) {
                    const float wp = k.w[i] * pc[i];
                    const int skip = k.lab[i] == fc || (k.n_top[i] == 1.0f && k.d[i] == fc);
                    const float l1p = log1pf(-pc[i]);
                    ln_1mp += skip ? 0.0f : k.w[i] * l1p;
                    in += k.lab[i] == fc ? wp : 0.0f;
                    sp += wp;
                    count += k.lab[i] == fc ? k.w[i] : 0.0f;
                }
                neg += ln_1mp;
                mine[2 + b * channels + c] += in;
                mine[2 + bc + b * channels + c] += sp;
                mine[2 + 2 * bc + b * channels + c] += count;
            }
            mine[0] += pos;
            mine[1] += neg;
        }
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
        work_free(&k);
    }
    for (int64_t j = 0; j < per_thread; j++) {
        double total = 0.0;
        for (int t = 0; t < threads; t++) total += acc[t * per_thread + j];
        sums[j] = total;
    }
    free(acc);
    return failed;
}

/* Backward: grad (B, C, N) from the upstream gradients g_pos_neg (2 floats) and g_inter, g_sum_p ((B, C) floats,
 * channel 0 ignored). Returns 0, or 1 when memory ran out. */
int combo_backward(const float *x, const int64_t *labels, const float *mask, int64_t batch, int64_t channels,
                   int64_t n_vox, int threads, const float *g_pos_neg, const float *g_inter, const float *g_sum_p,
                   float *grad) {
    const float g_pos = g_pos_neg[0], g_neg = g_pos_neg[1];
    const int64_t blocks = batch * ((n_vox + BLOCK - 1) / BLOCK);
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        Work k;
        const int ok = work_init(&k, channels);
        float *phi = alloc_floats(BLOCK);
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < blocks; blk++) {
            if (!ok || !phi) continue;
            int64_t b, start;
            const int64_t len = load_block(&k, x, labels, mask, channels, n_vox, blk, &b, &start);
            const float *xb = x + b * channels * n_vox + start;
#pragma omp simd
            for (int64_t i = 0; i < len; i++) phi[i] = k.lab[i] >= 1.0f ? -g_pos : 0.0f;
            for (int64_t c = 1; c < channels; c++) { /* phi = sum_c b_c rho_c - a - sum_c gamma_c p_c */
                const float *restrict pc = k.p + c * BLOCK;
                const float fc = (float)c, gi = g_inter[b * channels + c], gs = g_sum_p[b * channels + c];
#pragma omp simd
                for (int64_t i = 0; i < len; i++) {
                    const int at_d = k.n_top[i] == 1.0f && k.d[i] == fc;
                    const float rho = at_d ? 0.0f : pc[i] / (1.0f - pc[i]);
                    const float gamma = k.lab[i] == fc ? gi + gs : gs;
                    phi[i] += (k.lab[i] == fc ? 0.0f : g_neg * rho) - gamma * pc[i];
                }
            }
            const float *restrict lab = k.lab, *restrict n_top = k.n_top, *restrict d = k.d, *restrict s = k.s;
            const float *restrict ref = k.ref, *restrict scale = k.scale, *restrict tn = k.tn, *restrict w = k.w;
            for (int64_t c = 0; c < channels; c++) {
                const float *restrict pc = k.p + c * BLOCK;
                const float *restrict xc = xb + c * n_vox;
                float *restrict gc = grad + (b * channels + c) * n_vox + start;
                const float fc = (float)c, fg = c ? 1.0f : 0.0f;
                const float gi = c ? g_inter[b * channels + c] : 0.0f, gs = c ? g_sum_p[b * channels + c] : 0.0f;
#pragma omp simd
                for (int64_t i = 0; i < len; i++) {
                    const int is_label = lab[i] == fc, at_d = n_top[i] == 1.0f && d[i] == fc;
                    const float p = pc[i];
                    const float a = is_label ? fg * g_pos : 0.0f;
                    const float gamma = is_label ? gi + gs : gs;
                    const float b_rho = (is_label || at_d) ? 0.0f : fg * g_neg * p / (1.0f - p);
                    /* the unique max d as a false positive: b_d (-p_d) at d, b_d p_d p_j / (1 - p_d) elsewhere */
                    const float p_d = 1.0f / s[i];
                    const float q = expf(xc[i] - ref[i]) * scale[i]; /* p_j / (1 - p_d), j != d */
                    const float top_term = tn[i] * g_neg * (at_d ? -p_d : p_d * q);
                    gc[i] = w[i] * (a - b_rho + gamma * p + p * phi[i] + top_term);
                }
            }
        }
        if (!ok || !phi) {
#pragma omp atomic write
            failed = 1;
        }
        free(phi);
        work_free(&k);
    }
    return failed;
}
