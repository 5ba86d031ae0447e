// The few LAPACK routines stepq calls, by their Fortran names (OpenBLAS exports them; no LAPACKE
// wrapper, whose library would pull in a second, threaded LAPACK). Column-major, as Fortran; the
// callers pass row-major matrices as their transposes. The trailing size_t arguments are the
// hidden lengths of character arguments in gfortran's calling convention.
#pragma once
#include <cstddef>

extern "C" {
void sgelqf_(const int* m, const int* n, float* a, const int* lda, float* tau, float* work, const int* lwork,
             int* info);
void sorglq_(const int* m, const int* n, const int* k, float* a, const int* lda, const float* tau, float* work,
             const int* lwork, int* info);
void sgesdd_(const char* jobz, const int* m, const int* n, float* a, const int* lda, float* s, float* u, const int* ldu,
             float* vt, const int* ldvt, float* work, const int* lwork, int* iwork, int* info, size_t jobz_len);
void sposv_(const char* uplo, const int* n, const int* nrhs, float* a, const int* lda, float* b, const int* ldb,
            int* info, size_t uplo_len);
}
