/*
 * cblas_sgemm for 2-8 rows by a weight matrix, at memory speed; every other product goes to the BLAS
 * loaded behind it (rows_gemm.py builds this file, blas.py puts it in front of BLIS or OpenBLAS).
 *
 * Why: a batched decode step multiplies a few rows (one per request) by every weight matrix. Reading
 * the matrix is the whole cost, so 2 or 4 rows should cost about what 1 does, but BLIS's small-matrix
 * path takes 1.4-2.4x the time of one row for them (an AMD EPYC core, out-of-cache float32; bench/README.md).
 * One row stays with the BLAS: its matrix-vector product already runs at memory speed.
 *
 * Two layouts:
 * - W [N, K] as mlx_lm stores a Linear's weight: MLX asks for C = A Wᵀ (B transposed). R rows of W are
 *   read side by side, each multiplied into MB rows of A at once (R x MB vector accumulators).
 * - B [K, N], the output head stored as columns (shard.py): RK rows of B are read side by side and
 *   added into every row of C, which stays in the L2 cache for a head's few rows.
 * Either way the matrix is read once per product, and each output is the same sum whatever the number
 * of rows (2-8) in the product, so a request's numbers do not depend on which others share its batch.
 * The tests' single-process reference loads this file too, so it computes the mesh's numbers exactly.
 *
 * No headers and no libc: the compiler alone builds it (cc -O3 -march=native -shared -fPIC -nostdlib).
 */

typedef __SIZE_TYPE__ size_t;

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

#if defined(__AVX512F__)
/* 32 vector registers. 256-bit vectors: on an AMD EPYC (Zen 4) 2 rows by a 4096 x 1024 matrix took
 * 0.80 ms with them against 0.93 with 512-bit ones, which that core executes in two halves. */
#define VL 8 /* lanes per vector */
#define R 8  /* rows of W per block */
#define MB 2 /* rows of A per pass over a block: R x MB accumulators */
#define CL 16 /* lanes per vector for the columns: 5.6 ms for 2 rows by the 576 x 49152 head against 5.8 */
#elif defined(__AVX__)
#define VL 8 /* 16 vector registers of 256 bits */
#define R 4
#define MB 2
#else
#define VL 4 /* 128-bit (SSE, NEON) */
#define R 4
#define MB 2
#endif

#ifndef CL
#define CL VL
#endif

typedef float vec __attribute__((vector_size(VL * 4), aligned(4), may_alias));
typedef float cvec __attribute__((vector_size(CL * 4), aligned(4), may_alias));

/* Vectors are read and written through these under-aligned, may_alias types: one unaligned move each.
 * (A __builtin_memcpy of 32 bytes, which this file used before, is two 16-byte moves through the stack
 * with gcc 12 on AVX2 CPUs: every load stalled on store forwarding, 12x slower on an AMD EPYC Zen 3.) */
static inline vec load(const float *p) { return *(const vec *)p; }

static inline cvec cload(const float *p) { return *(const cvec *)p; }

static inline void cstore(float *p, cvec v) { *(cvec *)p = v; }

static inline float lanes_sum(vec v) {
  float s[VL];
  __builtin_memcpy(s, &v, sizeof v);
  for (int w = VL / 2; w > 0; w /= 2)
    for (int i = 0; i < w; i++) s[i] += s[i + w];
  return s[0];
}

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int);

static sgemm_fn fallback;
static int min_rows = 2, max_rows = 8;
enum { MIN_SIDE = 256 };
static long long calls_taken;

/* The BLAS that gets every call this file does not take. */
void rows_gemm_set_fallback(sgemm_fn f) { fallback = f; }
/* From how many to how many rows (M) this file takes a product; max 0 takes none. */
void rows_gemm_set_rows(int min, int max) { min_rows = min, max_rows = max; }
/* How many products this file has computed (the tests check it was used). */
long long rows_gemm_calls(void) { return calls_taken; }

static inline void put(float *c, float s, float alpha, float beta) {
  *c = beta == 0.0f ? alpha * s : alpha * s + beta * *c;
}

/* C[m0 .. m0+mr) x [n0, n0+R) for a whole block of R rows of W; mr is a constant where inlined. */
static inline __attribute__((always_inline)) void tile(const int mr, int n0, int N, int K, int m0, const float *A, int lda, const float *B,
                                                      int ldb, float *C, int ldc, float alpha, float beta) {
  const int KV = K - K % VL;
  const float *b[R];
  for (int j = 0; j < R; j++) b[j] = B + (size_t)(n0 + j) * ldb;
  vec acc[MB][R];
  for (int m = 0; m < mr; m++)
    for (int j = 0; j < R; j++) acc[m][j] = (vec){0};
  for (int k = 0; k < KV; k += VL) {
    vec w[R];
    for (int j = 0; j < R; j++) w[j] = load(b[j] + k);
    /* The next block's same place: a block's R rows are short runs (K floats each), which the hardware
     * prefetcher starts too late on. On an AMD EPYC (Zen 3) core, 30 layers of the default model's
     * shapes (425 MB) took 32.2 ms for 2 rows and 39.4 for 4 without this, 26.2 and 30.9 with it; one
     * row (BLIS) 24.3. (A prefetch past the matrix's end is harmless: it never faults.) */
    for (int j = 0; j < R; j++) __builtin_prefetch(b[j] + k + (size_t)R * ldb);
    for (int m = 0; m < mr; m++) {
      vec a = load(A + (size_t)(m0 + m) * lda + k);
      for (int j = 0; j < R; j++) acc[m][j] += a * w[j];
    }
  }
  for (int m = 0; m < mr; m++) {
    const float *a = A + (size_t)(m0 + m) * lda;
    for (int j = 0; j < R; j++) {
      float s = lanes_sum(acc[m][j]);
      for (int k = KV; k < K; k++) s += a[k] * b[j][k];
      put(C + (size_t)(m0 + m) * ldc + n0 + j, s, alpha, beta);
    }
  }
}

/* One output, the same sum as tile()'s. */
static float dot(int K, const float *a, const float *b) {
  const int KV = K - K % VL;
  vec acc = (vec){0};
  for (int k = 0; k < KV; k += VL) acc += load(a + k) * load(b + k);
  float s = lanes_sum(acc);
  for (int k = KV; k < K; k++) s += a[k] * b[k];
  return s;
}

/*
 * C = alpha A B + beta C with B [K, N] row-major: the output head stored as columns (shard.py). Here a
 * row of B is a long contiguous run, so RK rows of B are read side by side and added into every row of
 * C: C is read and written once per RK rows of B, and stays in the L2 cache for a head's few rows.
 * Each output is a chain of fused multiply-adds over k in order, whatever M is.
 */
enum { RK = 8 };

/* C[:, :] (+)= A[:, k .. k+rk) B[k .. k+rk, :]; rk is a constant where inlined. */
static inline __attribute__((always_inline)) void add_rows(const int rk, int first, int M, int N, int k, const float *A, int lda, const float *B,
                                                          int ldb, float *C, int ldc) {
  const float *b[RK];
  for (int i = 0; i < rk; i++) b[i] = B + (size_t)(k + i) * ldb;
  const int NV = N - N % CL;
  for (int j = 0; j < NV; j += CL) {
    cvec w[RK];
    for (int i = 0; i < rk; i++) w[i] = cload(b[i] + j);
    for (int m = 0; m < M; m++) {
      const float *a = A + (size_t)m * lda + k;
      float *c = C + (size_t)m * ldc + j;
      cvec t = first ? (cvec){0} : cload(c);
      for (int i = 0; i < rk; i++) t += a[i] * w[i];
      cstore(c, t);
    }
  }
  for (int j = NV; j < N; j++)
    for (int m = 0; m < M; m++) {
      const float *a = A + (size_t)m * lda + k;
      float t = first ? 0.0f : C[(size_t)m * ldc + j];
      for (int i = 0; i < rk; i++) t += a[i] * b[i][j];
      C[(size_t)m * ldc + j] = t;
    }
}

/* C = alpha A B with B [K, N] row-major (beta is 0: C is only written). */
static void rows_by_columns(int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb, float *C, int ldc) {
  int k = 0;
  for (; k + RK <= K; k += RK) add_rows(RK, k == 0, M, N, k, A, lda, B, ldb, C, ldc);
  for (; k < K; k++) add_rows(1, k == 0, M, N, k, A, lda, B, ldb, C, ldc);
  if (alpha != 1.0f)
    for (int m = 0; m < M; m++)
      for (int n = 0; n < N; n++) C[(size_t)m * ldc + n] *= alpha;
}

/* C = alpha A Wᵀ + beta C: A [M, K], W [N, K], C [M, N], row-major. */
static void rows_by_weights(int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
  int n = 0;
  for (; n + R <= N; n += R) {
    int m = 0;
    for (; m + MB <= M; m += MB) tile(MB, n, N, K, m, A, lda, B, ldb, C, ldc, alpha, beta);
    for (; m < M; m++) tile(1, n, N, K, m, A, lda, B, ldb, C, ldc, alpha, beta);
  }
  for (; n < N; n++)
    for (int m = 0; m < M; m++) put(C + (size_t)m * ldc + n, dot(K, A + (size_t)m * lda, B + (size_t)n * ldb), alpha, beta);
}

void cblas_sgemm(int order, int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb, float beta,
                 float *C, int ldc) {
  /* A weight matrix: both sides at least MIN_SIDE (an attention product has the head size on one). */
  if (order == ROW_MAJOR && trans_a == NO_TRANS && M >= min_rows && M <= max_rows && N >= MIN_SIDE && K >= MIN_SIDE) {
    if (trans_b == TRANS) {
      calls_taken++;
      rows_by_weights(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      return;
    }
    if (trans_b == NO_TRANS && beta == 0.0f) {
      calls_taken++;
      rows_by_columns(M, N, K, alpha, A, lda, B, ldb, C, ldc);
      return;
    }
  }
  if (!fallback) __builtin_trap(); /* set by rows_gemm.py before MLX can call */
  fallback(order, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
