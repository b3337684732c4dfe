/*
 * bench_step — one full training step of GPT-2 124M on this machine: zero
 * grad, forward, backward, global norm + clip, AdamW (the calls
 * workers/engine.c makes for a step: gpt2_shard_zero_grad, which costs
 * nothing after an optim_step, since AdamW consumes the gradients). Random init, random
 * tokens, a warm-up step, then the mean of N timed steps (and the per-phase
 * split). Reports ms/step, achieved GFLOP/s, model-FLOPs utilisation against
 * a large sgemm measured in this binary with the same thread count, peak
 * RSS, and the resident-set growth across the timed steps (it must be 0: the
 * step never allocates).
 *
 *   bench_step [--steps N] [--threads N] [--batch B] [--seq T] [--preset NAME]
 *   bench_step --corename      (print OpenBLAS's kernel choice and exit)
 *
 * The binary is linked with -Wl,--wrap=cblas_sgemm (Makefile), so every
 * sgemm of the step passes through __wrap_cblas_sgemm below: the step's
 * multi-threaded sgemm calls (all but the attention's per-head products,
 * which run single-threaded inside pool parts) are timed in the timed steps
 * and recorded in the warm-up step; after the steps the recorded calls are
 * replayed back to back, with the step's own shapes, operands and buffers.
 * That replay is the floor of this step on this machine's OpenBLAS: no
 * ordering of the remaining work can make the step faster than its sgemms.
 *
 * The last lines are machine-readable for bench_step.sh: "STEP_MS t1 t2 ..."
 * (every timed step) and "RESULT ms_per_step=... gemm_ms=...
 * gemm_replay_ms=...".
 */
#include <cblas.h>

#include "../common/et_blas.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../model/gpt2.h"
#include "../model/optim.h"

/* Declared by OpenBLAS (not in every cblas.h). */
char *openblas_get_corename(void);

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------- the step's sgemm calls */

/* One recorded cblas_sgemm call. */
typedef struct {
    enum CBLAS_ORDER order;
    enum CBLAS_TRANSPOSE ta, tb;
    blasint m, n, k, lda, ldb, ldc;
    float alpha, beta;
    const float *a, *b;
    float *c;
} gemm_call;

#define GEMM_MAX_CALLS 4096

/* Set by main only while no pool part runs (between phases of a step), read
 * by __wrap_cblas_sgemm: the pool's hand-off orders those writes before
 * the reads. */
static struct {
    int record, time, bench_threads, overflow;
    int n;
    double seconds; /* timed calls, summed over the timed steps */
    gemm_call calls[GEMM_MAX_CALLS];
} gemm_log;

/* OpenBLAS's own cblas_sgemm, under the name the linker gives it. */
__typeof__(cblas_sgemm) __real_cblas_sgemm;

/* Every cblas_sgemm of this binary lands here (see the top of the file).
 * A call counts when OpenBLAS runs it on the benchmark's thread count: the
 * attention's pool parts lower OpenBLAS to one thread while they run. */
void __wrap_cblas_sgemm(OPENBLAS_CONST enum CBLAS_ORDER order,
                        OPENBLAS_CONST enum CBLAS_TRANSPOSE ta,
                        OPENBLAS_CONST enum CBLAS_TRANSPOSE tb, OPENBLAS_CONST blasint m,
                        OPENBLAS_CONST blasint n, OPENBLAS_CONST blasint k,
                        OPENBLAS_CONST float alpha, OPENBLAS_CONST float *a,
                        OPENBLAS_CONST blasint lda, OPENBLAS_CONST float *b,
                        OPENBLAS_CONST blasint ldb, OPENBLAS_CONST float beta, float *c,
                        OPENBLAS_CONST blasint ldc)
{
    int counted = (gemm_log.record || gemm_log.time) &&
                  openblas_get_num_threads() == gemm_log.bench_threads;
    if (counted && gemm_log.record) {
        if (gemm_log.n < GEMM_MAX_CALLS)
            gemm_log.calls[gemm_log.n++] =
                (gemm_call){order, ta, tb, m, n, k, lda, ldb, ldc, alpha, beta, a, b, c};
        else
            gemm_log.overflow = 1;
    }
    double t0 = counted && gemm_log.time ? now_s() : 0.0;
    __real_cblas_sgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    if (counted && gemm_log.time)
        gemm_log.seconds += now_s() - t0;
}

/* FLOPs of the recorded calls (one step's). */
static double gemm_flops(void)
{
    double f = 0.0;
    for (int i = 0; i < gemm_log.n; i++)
        f += 2.0 * gemm_log.calls[i].m * gemm_log.calls[i].n * (double)gemm_log.calls[i].k;
    return f;
}

/* The recorded calls back to back, `reps` times: the best pass, in s. */
static double gemm_replay(int reps)
{
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        for (int i = 0; i < gemm_log.n; i++) {
            const gemm_call *g = &gemm_log.calls[i];
            __real_cblas_sgemm(g->order, g->ta, g->tb, g->m, g->n, g->k, g->alpha, g->a, g->lda,
                               g->b, g->ldb, g->beta, g->c, g->ldc);
        }
        double t = now_s() - t0;
        best = t < best ? t : best;
    }
    return best;
}

/* Resident set size now, in MiB (from /proc/self/statm). */
static double rss_mib(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0.0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = 0;
    fclose(f);
    return (double)resident * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

/* Peak RSS so far, in MiB. */
static double peak_rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* Best of a few 2048^3 sgemms: this machine's practical fp32 peak (called
 * before and after the steps; the best of both counts, so that a moment of
 * load from other processes does not lower the reference). */
static double sgemm_peak_gflops(void)
{
    const int n = 2048;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n),
          *c = malloc(sizeof(float) * n * n);
    if (!a || !b || !c) {
        fprintf(stderr, "bench_step: out of memory\n");
        exit(1);
    }
    for (long i = 0; i < (long)n * n; i++) {
        a[i] = (float)((i * 7) % 13) * 0.01f;
        b[i] = (float)((i * 5) % 11) * 0.01f;
    }
    double best = 0.0;
    for (int r = 0; r < 5; r++) {
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        double g = 2.0 * n * n * (double)n / (now_s() - t0) * 1e-9;
        best = g > best ? g : best;
    }
    free(a), free(b), free(c);
    return best;
}

/* Model FLOPs of one training step (forward + backward = 3x forward):
 * matmuls 2 * tokens * (12 L C^2 + V C) and attention 2 * 2 * tokens * T * C
 * per layer (QK^T and AV over the full T x T, as computed). The backward's
 * recomputation of QK^T is not counted (it is not model work). */
static double step_flops(const gpt2_config *c, int B, int T)
{
    double tok = (double)B * T, C = c->n_embd, L = c->n_layer, V = c->vocab_size;
    double fwd = 2.0 * tok * (12.0 * L * C * C + V * C) + 4.0 * tok * T * C * L;
    return 3.0 * fwd;
}

int main(int argc, char **argv)
{
    et_blas_select_core(argv); /* the CPU's real OpenBLAS kernels (common/et_blas.h) */
    int steps = 5, threads = 2, B = 4, T = 64;
    const char *preset = "gpt2";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--corename") == 0) {
            printf("%s\n", openblas_get_corename());
            return 0;
        } else if (i + 1 < argc && strcmp(argv[i], "--steps") == 0) {
            steps = atoi(argv[++i]);
        } else if (i + 1 < argc && strcmp(argv[i], "--threads") == 0) {
            threads = atoi(argv[++i]);
        } else if (i + 1 < argc && strcmp(argv[i], "--batch") == 0) {
            B = atoi(argv[++i]);
        } else if (i + 1 < argc && strcmp(argv[i], "--seq") == 0) {
            T = atoi(argv[++i]);
        } else if (i + 1 < argc && strcmp(argv[i], "--preset") == 0) {
            preset = argv[++i];
        } else {
            fprintf(stderr, "usage: bench_step [--steps N] [--threads N] [--batch B] [--seq T] "
                            "[--preset NAME] | --corename\n");
            return 2;
        }
    }
    if (steps < 1 || threads < 1 || B < 1 || T < 1) {
        fprintf(stderr, "bench_step: steps, threads, batch and seq must be positive\n");
        return 2;
    }
    openblas_set_num_threads(threads);
    gemm_log.bench_threads = threads;

    gpt2_config cfg;
    if (gpt2_config_preset(preset, &cfg) < 0) {
        fprintf(stderr, "bench_step: unknown preset '%s'\n", preset);
        return 2;
    }
    gpt2_shard_spec spec = {0, cfg.n_layer - 1, 1, 1, 0, 1};
    et_err e;
    et_err_clear(&e);
    gpt2_shard *sh = gpt2_shard_new(&cfg, &spec, &e);
    if (!sh)
        return et_err_report(&e);
    gpt2_acts *a = gpt2_acts_new(sh, B, T);
    if (!a) {
        fprintf(stderr, "bench_step: T %d exceeds block_size %d\n", T, cfg.block_size);
        return 2;
    }
    double peak = sgemm_peak_gflops();
    double t_init = now_s();
    gpt2_shard_init_random(sh, 1);
    t_init = now_s() - t_init;
    optim_state *st = optim_state_new(sh);
    optim_config oc;
    optim_config_default(&oc);
    oc.weight_decay = 0.1;

    int *tok = malloc(sizeof(int) * (size_t)B * (T + 1));
    uint64_t s = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < B * (T + 1); i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        tok[i] = (int)((s >> 33) % (uint64_t)cfg.vocab_size);
    }
    int *inp = malloc(sizeof(int) * (size_t)B * T), *tgt = malloc(sizeof(int) * (size_t)B * T);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            inp[b * T + t] = tok[b * (T + 1) + t];
            tgt[b * T + t] = tok[b * (T + 1) + t + 1];
        }

    printf("bench_step: %s (%zu params), B=%d T=%d, %d BLAS threads, OpenBLAS core %s\n", preset,
           sh->n_params, B, T, threads, openblas_get_corename());
    printf("  init %.2f s, activations %.1f MiB\n", t_init,
           (double)gpt2_acts_bytes(sh, B, T) / (1024.0 * 1024.0));

    double ph[4] = {0, 0, 0, 0}, total = 0.0, best = 1e30, rss_warm = 0.0;
    double *step_ms = calloc((size_t)steps, sizeof(double));
    float loss = 0.0f;
    for (int it = 0; it <= steps; it++) {
        gemm_log.record = it == 0; /* the warm-up step's calls, replayed below */
        gemm_log.time = it > 0;
        double t0 = now_s();
        gpt2_shard_zero_grad(sh);
        loss = gpt2_forward(sh, a, inp, NULL, tgt, NULL);
        double t1 = now_s();
        gpt2_backward(sh, a, inp, NULL, 1.0f, NULL);
        double t2 = now_s();
        double norm = sqrt(optim_grad_sqsum(sh, 1, 0));
        double scale = optim_clip_scale(&oc, norm);
        double t3 = now_s();
        optim_step(sh, st, &oc, it, scale);
        double t4 = now_s();
        if (!isfinite(loss) || !isfinite(norm)) {
            fprintf(stderr, "bench_step: non-finite loss %g or norm %g\n", loss, norm);
            return 1;
        }
        if (it == 0) { /* warm-up */
            rss_warm = rss_mib();
            printf("  warm-up step %.1f ms, loss %.4f\n", (t4 - t0) * 1e3, loss);
            continue;
        }
        ph[0] += t1 - t0, ph[1] += t2 - t1, ph[2] += t3 - t2, ph[3] += t4 - t3;
        total += t4 - t0;
        step_ms[it - 1] = (t4 - t0) * 1e3;
        best = t4 - t0 < best ? t4 - t0 : best;
    }
    gemm_log.record = gemm_log.time = 0;
    double rss_end = rss_mib();
    if (gemm_log.overflow) {
        fprintf(stderr, "bench_step: more than %d sgemm calls in a step\n", GEMM_MAX_CALLS);
        return 1;
    }
    /* Last: the replay leaves the activations and gradients garbage. */
    double gemm_step = gemm_log.seconds / steps, gemm_floor = gemm_replay(3);
    double peak2 = sgemm_peak_gflops();
    peak = peak2 > peak ? peak2 : peak;
    double mean = total / steps, flops = step_flops(&cfg, B, T);
    printf("  step: mean %.1f ms, best %.1f ms over %d steps (loss %.4f)\n", mean * 1e3,
           best * 1e3, steps, loss);
    printf("  split: forward %.1f, backward %.1f, norm+clip %.1f, AdamW %.1f ms\n",
           ph[0] / steps * 1e3, ph[1] / steps * 1e3, ph[2] / steps * 1e3, ph[3] / steps * 1e3);
    printf("  model FLOPs/step %.1f G, achieved %.1f GFLOP/s, sgemm peak %.1f GFLOP/s, MFU %.1f%%\n",
           flops * 1e-9, flops / mean * 1e-9, peak, 100.0 * flops / mean * 1e-9 / peak);
    printf("  sgemm: %d multi-threaded calls per step, %.1f ms/step in the step (%.1f GFLOP/s); "
           "replayed back to back %.1f ms (%.1f GFLOP/s, best of 3); the rest of the step %.1f ms\n",
           gemm_log.n, gemm_step * 1e3, gemm_flops() / gemm_step * 1e-9, gemm_floor * 1e3,
           gemm_flops() / gemm_floor * 1e-9,
           (mean - gemm_step) * 1e3);
    printf("  peak RSS %.1f MiB, RSS after warm-up %.1f MiB, after %d steps %.1f MiB (growth %.1f MiB)\n",
           peak_rss_mib(), rss_warm, steps, rss_end, rss_end - rss_warm);
    printf("STEP_MS");
    for (int i = 0; i < steps; i++)
        printf(" %.2f", step_ms[i]);
    printf("\n");
    free(step_ms);
    printf("RESULT ms_per_step=%.2f best_ms=%.2f gflops=%.2f peak_gflops=%.2f mfu=%.4f "
           "peak_rss_mib=%.1f rss_growth_mib=%.1f gemm_ms=%.2f gemm_replay_ms=%.2f\n",
           mean * 1e3, best * 1e3, flops / mean * 1e-9, peak, flops / mean * 1e-9 / peak,
           peak_rss_mib(), rss_end - rss_warm, gemm_step * 1e3, gemm_floor * 1e3);
    free(tok), free(inp), free(tgt);
    optim_state_free(st);
    gpt2_acts_free(a);
    gpt2_shard_free(sh);
    return 0;
}
