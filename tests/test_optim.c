/*
 * test_optim — AdamW, the learning-rate schedule, clipping and the gradient
 * norm of model/optim.h. The AdamW values are hand-derived (one element is
 * worked below) and equal those torch.optim.AdamW (PyTorch 1.13) prints for
 * the same two steps.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../model/optim.h"

/* A shard of 12 floats: wte [1,4] (decay), ln_f weight [4], ln_f bias [4]. */
static gpt2_shard *small_shard(void)
{
    gpt2_config c = {1, 1, 4, 1, 1};
    gpt2_shard_spec s = {0, -1, 0, 1, 0, 1};
    et_err e;
    et_err_clear(&e);
    gpt2_shard *sh = gpt2_shard_new(&c, &s, &e);
    ck_assert_msg(sh != NULL, "%s", e.msg);
    ck_assert_uint_eq(sh->n_params, 12);
    return sh;
}

static void set(float *dst, const float *src)
{
    memcpy(dst, src, 4 * sizeof(float));
}

START_TEST(test_adamw_two_steps_match_hand_computed_values)
{
    gpt2_shard *sh = small_shard();
    optim_state *st = optim_state_new(sh);
    optim_config o;
    optim_config_default(&o);
    o.lr = 0.1;
    o.warmup_steps = 2; /* lr 0.05 at step 0, 0.1 at step 1 */
    o.weight_decay = 0.1;
    const float p_w[4] = {1.0f, -0.5f, 0.25f, 2.0f}, p_lw[4] = {1.0f, 1.0f, 0.5f, -1.5f},
                p_lb[4] = {0.0f, 0.1f, -0.2f, 0.3f};
    const float g1_w[4] = {0.5f, -0.1f, 0.0f, 3.0f}, g1_lw[4] = {0.2f, -0.3f, 0.05f, 1.0f},
                g1_lb[4] = {-1.0f, 0.5f, 0.001f, 0.0f};
    const float g2_w[4] = {-0.25f, 0.2f, 1e-3f, -1.0f}, g2_lw[4] = {0.1f, 0.1f, -0.1f, 0.4f},
                g2_lb[4] = {0.2f, -0.5f, 0.0f, 2.0f};
    set(sh->wte, p_w), set(sh->lnf_w, p_lw), set(sh->lnf_b, p_lb);

    /* Step 0, wte[0] by hand: lr 0.05, p = 1 * (1 - 0.05*0.1) = 0.995;
     * m = 0.1*0.5 = 0.05, v = 0.05*0.25 = 0.0125; bias corrections 0.1 and
     * 0.05 give m^ = 0.5, v^ = 0.25; p -= 0.05 * 0.5 / (0.5 + 1e-8) -> 0.945. */
    set(sh->g_wte, g1_w), set(sh->g_lnf_w, g1_lw), set(sh->g_lnf_b, g1_lb);
    optim_step(sh, st, &o, 0, 1.0);
    const float s1_w[4] = {0.944999993f, -0.44749999f, 0.248750001f, 1.94000006f};
    const float s1_lw[4] = {0.949999988f, 1.04999995f, 0.450000018f, -1.54999995f};
    const float s1_lb[4] = {0.0500000007f, 0.0500000007f, -0.249999493f, 0.300000012f};
    for (int i = 0; i < 4; i++) {
        ck_assert_float_eq_tol(sh->wte[i], s1_w[i], 1e-6f);
        ck_assert_float_eq_tol(sh->lnf_w[i], s1_lw[i], 1e-6f);
        ck_assert_float_eq_tol(sh->lnf_b[i], s1_lb[i], 1e-6f);
    }
    /* Step 1 with clipping scale 0.5 applied to the gradients. */
    set(sh->g_wte, g2_w), set(sh->g_lnf_w, g2_lw), set(sh->g_lnf_b, g2_lb);
    optim_step(sh, st, &o, 1, 0.5);
    const float s2_w[4] = {0.888073385f, -0.448288143f, 0.172768563f, 1.86609399f};
    const float s2_lw[4] = {0.866002917f, 1.10450602f, 0.455263168f, -1.63125288f};
    const float s2_lb[4] = {0.110009238f, 0.0231630579f, -0.317863286f, 0.226503998f};
    const float m_w[4] = {0.0324999988f, 0.000999999698f, 5.00000024e-05f, 0.220000014f};
    const float v_w[4] = {0.01265625f, 0.000975000032f, 1.2500001e-08f, 0.439999998f};
    for (int i = 0; i < 4; i++) {
        ck_assert_float_eq_tol(sh->wte[i], s2_w[i], 2e-6f);
        ck_assert_float_eq_tol(sh->lnf_w[i], s2_lw[i], 2e-6f);
        ck_assert_float_eq_tol(sh->lnf_b[i], s2_lb[i], 2e-6f);
        ck_assert_double_le(fabs(st->m[i] - m_w[i]), 1e-6 * fabs(m_w[i]));
        ck_assert_double_le(fabs(st->v[i] - v_w[i]), 1e-6 * fabs(v_w[i]));
    }
    /* the gradients are consumed: all zero afterwards, and known to be */
    for (size_t i = 0; i < sh->n_params; i++)
        ck_assert(sh->grads[i] == 0.0f);
    ck_assert_int_eq(sh->grads_zero, 1);
    ck_assert_int_eq(sh->grad_overwrite, 0);
    optim_state_free(st);
    gpt2_shard_free(sh);
}
END_TEST

START_TEST(test_weight_decay_applies_only_to_decay_tensors)
{
    gpt2_shard *sh = small_shard();
    optim_state *st = optim_state_new(sh);
    optim_config o;
    optim_config_default(&o);
    o.lr = 0.1;
    o.weight_decay = 0.5;
    for (size_t i = 0; i < sh->n_params; i++)
        sh->params[i] = 2.0f; /* zero gradients: only the decay moves a weight */
    optim_step(sh, st, &o, 0, 1.0);
    for (int i = 0; i < sh->n_tensors; i++) {
        const gpt2_tensor *t = &sh->tensors[i];
        float want = t->decay ? 2.0f * (1.0f - 0.05f) : 2.0f;
        for (size_t k = 0; k < t->numel; k++)
            ck_assert_float_eq_tol(sh->params[t->offset + k], want, 1e-7f);
    }
    ck_assert(sh->tensors[0].decay && !sh->tensors[1].decay && !sh->tensors[2].decay);
    optim_state_free(st);
    gpt2_shard_free(sh);
}
END_TEST

START_TEST(test_lr_schedule_warmup_cosine_and_constant)
{
    optim_config o;
    optim_config_default(&o);
    ck_assert_double_eq(o.lr, 6e-4);
    ck_assert_double_eq(o.beta1, 0.9);
    ck_assert_double_eq(o.beta2, 0.95);
    ck_assert_double_eq(o.eps, 1e-8);
    ck_assert_double_eq(o.weight_decay, 0.0);
    ck_assert_double_eq(o.grad_clip, 1.0);
    /* none: constant */
    ck_assert_double_eq(optim_lr_at(&o, 0), 6e-4);
    ck_assert_double_eq(optim_lr_at(&o, 12345), 6e-4);
    /* warm-up alone: lr*(s+1)/warmup, then constant */
    o.warmup_steps = 4;
    ck_assert_double_eq_tol(optim_lr_at(&o, 0), 1.5e-4, 1e-15);
    ck_assert_double_eq_tol(optim_lr_at(&o, 3), 6e-4, 1e-15);
    ck_assert_double_eq_tol(optim_lr_at(&o, 4), 6e-4, 1e-15);
    /* warm-up 10 then cosine to min_lr over steps 10..110 */
    o.warmup_steps = 10;
    o.cosine = 1;
    o.max_steps = 110;
    o.min_lr = 6e-5;
    ck_assert_double_eq_tol(optim_lr_at(&o, 0), 6e-5, 1e-15);
    ck_assert_double_eq_tol(optim_lr_at(&o, 9), 6e-4, 1e-15);
    ck_assert_double_eq_tol(optim_lr_at(&o, 10), 6e-4, 1e-15);
    ck_assert_double_eq_tol(optim_lr_at(&o, 60), 3.3e-4, 1e-15);       /* p = 1/2 */
    ck_assert_double_eq_tol(optim_lr_at(&o, 35), 6e-5 + 0.5 * 5.4e-4 * (1 + cos(M_PI / 4)), 1e-15);
    ck_assert_double_eq_tol(optim_lr_at(&o, 110), 6e-5, 1e-15);
    ck_assert_double_eq_tol(optim_lr_at(&o, 500), 6e-5, 1e-15);       /* held at min_lr */
    /* no warm-up, max_steps <= warmup: max(1, .) in the denominator */
    o.warmup_steps = 0;
    o.max_steps = 0;
    ck_assert_double_eq_tol(optim_lr_at(&o, 0), 6e-4, 1e-15);
    ck_assert_double_eq_tol(optim_lr_at(&o, 1), 6e-5, 1e-15);
}
END_TEST

START_TEST(test_clip_scale_only_when_norm_exceeds_the_limit)
{
    optim_config o;
    optim_config_default(&o);
    ck_assert_double_eq_tol(optim_clip_scale(&o, 2.0), 1.0 / (2.0 + 1e-6), 1e-15);
    ck_assert_double_eq(optim_clip_scale(&o, 0.5), 1.0);
    ck_assert_double_eq(optim_clip_scale(&o, 1.0), 1.0);
    ck_assert_double_eq(optim_clip_scale(&o, NAN), 1.0);
    o.grad_clip = 0.25;
    ck_assert_double_eq_tol(optim_clip_scale(&o, 10.0), 0.25 / (10.0 + 1e-6), 1e-15);
    o.grad_clip = 0.0; /* disabled */
    ck_assert_double_eq(optim_clip_scale(&o, 1e9), 1.0);
}
END_TEST

START_TEST(test_grad_sqsum_counts_replicated_and_wte_once)
{
    gpt2_config c = {2, 3, 36, 97, 8};
    gpt2_shard_spec s = {0, 1, 1, 1, 1, 3};
    et_err e;
    et_err_clear(&e);
    gpt2_shard *sh = gpt2_shard_new(&c, &s, &e);
    ck_assert_ptr_nonnull(sh);
    for (size_t i = 0; i < sh->n_params; i++)
        sh->grads[i] = 0.5f; /* each element contributes 0.25 */
    size_t sharded = 0;
    for (int i = 0; i < sh->n_tensors; i++)
        if (sh->tensors[i].sharded)
            sharded += sh->tensors[i].numel;
    ck_assert_uint_gt(sharded, 0);
    ck_assert_double_eq_tol(optim_grad_sqsum(sh, 1, 0), 0.25 * sh->n_params, 1e-6);
    ck_assert_double_eq_tol(optim_grad_sqsum(sh, 0, 0), 0.25 * sharded, 1e-6);
    ck_assert_double_eq_tol(optim_grad_sqsum(sh, 1, 1), 0.25 * (sh->n_params - 97 * 36), 1e-6);
    /* discarded gradients count as zero */
    gpt2_shard_discard_grad(sh);
    ck_assert_double_eq(optim_grad_sqsum(sh, 1, 0), 0.0);
    gpt2_shard_zero_grad(sh);
    ck_assert_double_eq(optim_grad_sqsum(sh, 1, 0), 0.0);
    ck_assert_int_eq(sh->grad_overwrite, 0);
    gpt2_shard_free(sh);
}
END_TEST

START_TEST(test_step_after_discard_equals_step_with_zero_gradients)
{
    gpt2_shard *x = small_shard(), *y = small_shard();
    optim_state *sx = optim_state_new(x), *sy = optim_state_new(y);
    optim_config o;
    optim_config_default(&o);
    o.weight_decay = 0.1;
    for (size_t i = 0; i < x->n_params; i++) {
        x->params[i] = y->params[i] = 0.1f * (float)i - 0.4f;
        x->grads[i] = y->grads[i] = 0.3f - 0.05f * (float)i;
    }
    optim_step(x, sx, &o, 0, 1.0);
    optim_step(y, sy, &o, 0, 1.0);
    gpt2_shard_zero_grad(x);
    for (size_t i = 0; i < y->n_params; i++)
        y->grads[i] = 123.0f; /* stale values the discard hides */
    gpt2_shard_discard_grad(y);
    optim_step(x, sx, &o, 1, 1.0);
    optim_step(y, sy, &o, 1, 1.0);
    for (size_t i = 0; i < x->n_params; i++) {
        ck_assert_float_eq(x->params[i], y->params[i]);
        ck_assert_float_eq(sx->m[i], sy->m[i]);
        ck_assert_float_eq(sx->v[i], sy->v[i]);
    }
    optim_state_free(sx);
    optim_state_free(sy);
    gpt2_shard_free(x);
    gpt2_shard_free(y);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("optim");
    tcase_add_test(tc, test_adamw_two_steps_match_hand_computed_values);
    tcase_add_test(tc, test_weight_decay_applies_only_to_decay_tensors);
    tcase_add_test(tc, test_lr_schedule_warmup_cosine_and_constant);
    tcase_add_test(tc, test_clip_scale_only_when_norm_exceeds_the_limit);
    tcase_add_test(tc, test_grad_sqsum_counts_replicated_and_wte_once);
    tcase_add_test(tc, test_step_after_discard_equals_step_with_zero_gradients);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
