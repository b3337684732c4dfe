#include "engine.h"

#include <math.h>
#include <stdlib.h>

et_engine *engine_new(const gpt2_config *mc, int B, int T, int M, const optim_config *oc,
                      const et_sampler *train, const int32_t *val, size_t n_val,
                      long eval_tokens, et_err *e)
{
    gpt2_shard_spec spec = {0, mc->n_layer - 1, 1, 1, 0, 1};
    gpt2_shard *sh = gpt2_shard_new(mc, &spec, e);
    if (!sh)
        return NULL;
    et_engine *en = et_xcalloc(1, sizeof *en);
    en->sh = sh;
    if (oc) {
        en->opt = optim_state_new(sh);
        en->ocfg = *oc;
    }
    en->B = B;
    en->T = T;
    en->M = M;
    en->acts = gpt2_acts_new(sh, B, T);
    en->tok = et_xmalloc((size_t)B * T * sizeof(int));
    en->tgt = et_xmalloc((size_t)B * T * sizeof(int));
    en->sampler = *train;
    en->val = val;
    en->n_val = n_val;
    /* Window w reads val[w*T ... w*T+T]: T predictions, T+1 tokens. */
    long usable = eval_tokens;
    if ((size_t)usable > n_val - 1)
        usable = (long)(n_val - 1);
    en->eval_windows = usable / T;
    en->rem = (int)(en->eval_windows % B);
    en->acts_rem = en->rem ? gpt2_acts_new(sh, en->rem, T) : NULL;
    return en;
}

void engine_free(et_engine *en)
{
    if (!en)
        return;
    gpt2_acts_free(en->acts);
    gpt2_acts_free(en->acts_rem);
    if (en->opt)
        optim_state_free(en->opt);
    gpt2_shard_free(en->sh);
    free(en->tok);
    free(en->tgt);
    free(en);
}

void engine_train_step(et_engine *en, long s, uint64_t k0, et_step_result *r)
{
    gpt2_shard_zero_grad(en->sh);
    double loss = 0;
    for (int i = 0; i < en->M; i++) {
        sampler_fill(&en->sampler, k0 + (uint64_t)i * en->B, en->B, en->tok, en->tgt);
        loss += gpt2_forward(en->sh, en->acts, en->tok, NULL, en->tgt, NULL);
        gpt2_backward(en->sh, en->acts, en->tok, NULL, 1.0f / en->M, NULL);
    }
    double norm = sqrt(optim_grad_sqsum(en->sh, 1, 0));
    r->loss = loss / en->M;
    r->grad_norm = norm;
    r->lr = optim_lr_at(&en->ocfg, s);
    optim_step(en->sh, en->opt, &en->ocfg, s, optim_clip_scale(&en->ocfg, norm));
}

void engine_eval(et_engine *en, et_eval_result *r)
{
    double loss_sum = 0;
    long correct = 0;
    long full = en->eval_windows / en->B;
    for (long b = 0; b < full; b++) {
        sampler_fill_windows(en->val, en->T, b * en->B, en->B, en->tok, en->tgt);
        loss_sum += (double)gpt2_forward(en->sh, en->acts, en->tok, NULL, en->tgt, NULL) * en->B;
        correct += gpt2_acts_correct(en->acts);
    }
    if (en->rem) {
        sampler_fill_windows(en->val, en->T, full * en->B, en->rem, en->tok, en->tgt);
        loss_sum += (double)gpt2_forward(en->sh, en->acts_rem, en->tok, NULL, en->tgt, NULL) * en->rem;
        correct += gpt2_acts_correct(en->acts_rem);
    }
    long n = en->eval_windows * en->T;
    r->tokens = n;
    r->loss = n ? loss_sum / en->eval_windows : NAN;
    r->accuracy = n ? (double)correct / n : NAN;
}
