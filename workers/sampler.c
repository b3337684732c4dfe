#include "sampler.h"

uint64_t sampler_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

size_t sampler_offset(const et_sampler *s, uint64_t k)
{
    uint64_t span = (uint64_t)(s->n_tokens - (size_t)s->seq_len - 1);
    if (s->random)
        return (size_t)(sampler_mix64(sampler_mix64(s->seed) ^ k) % span);
    /* (k*seq_len) mod span without overflow for any k: reduce k first. */
    return (size_t)(((k % span) * (uint64_t)s->seq_len) % span);
}

void sampler_fill(const et_sampler *s, uint64_t k0, int n, int *inputs, int *targets)
{
    int T = s->seq_len;
    for (int i = 0; i < n; i++) {
        const int32_t *src = s->tokens + sampler_offset(s, k0 + (uint64_t)i);
        for (int t = 0; t < T; t++) {
            inputs[(size_t)i * T + t] = src[t];
            targets[(size_t)i * T + t] = src[t + 1];
        }
    }
}

void sampler_fill_windows(const int32_t *split, int seq_len, long w0, int n, int *inputs, int *targets)
{
    int T = seq_len;
    for (int i = 0; i < n; i++) {
        const int32_t *src = split + (size_t)(w0 + i) * T;
        for (int t = 0; t < T; t++) {
            inputs[(size_t)i * T + t] = src[t];
            targets[(size_t)i * T + t] = src[t + 1];
        }
    }
}
