/*
 * et_blas — make OpenBLAS use this CPU's real kernels.
 *
 * Debian's OpenBLAS 0.3.21 (DYNAMIC_ARCH) does not recognise some current
 * x86 CPUs and falls back to its generic "Prescott" (SSE3) kernels, 3-5x
 * slower than the AVX2/AVX-512 ones the CPU supports. OpenBLAS picks its
 * kernels from OPENBLAS_CORETYPE once, when the library loads, so the only
 * cure from inside a program is to set the variable and re-execute itself.
 * A value the user set is always kept.
 */
#ifndef ET_BLAS_H
#define ET_BLAS_H

/* If OPENBLAS_CORETYPE is unset, OpenBLAS runs its generic kernels and the
 * CPU has AVX-512 (SkylakeX kernels) or AVX2+FMA (Haswell kernels): set the
 * variable and execv /proc/self/exe with argv (no return on success). Does
 * nothing otherwise, or when the re-execution fails. Call first in main. */
void et_blas_select_core(char **argv);

/* The OpenBLAS core in use, e.g. "SkylakeX". */
const char *et_blas_core(void);

#endif
