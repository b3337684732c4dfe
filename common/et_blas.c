#include "et_blas.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *openblas_get_corename(void);

const char *et_blas_core(void)
{
    return openblas_get_corename();
}

void et_blas_select_core(char **argv)
{
    if (getenv("OPENBLAS_CORETYPE") || getenv("EDGETRAIN_BLAS_REEXEC"))
        return;
    const char *core = openblas_get_corename();
    if (!core || (strcmp(core, "Prescott") != 0 && strcmp(core, "Core2") != 0 &&
                  strcmp(core, "Nehalem") != 0 && strcmp(core, "generic") != 0))
        return;
    const char *better = NULL;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
        better = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        better = "Haswell";
#endif
    if (!better)
        return;
    setenv("OPENBLAS_CORETYPE", better, 1);
    setenv("EDGETRAIN_BLAS_REEXEC", "1", 1); /* never loop */
    execv("/proc/self/exe", argv);
    /* execv failed: carry on with the generic kernels. */
    unsetenv("OPENBLAS_CORETYPE");
}
