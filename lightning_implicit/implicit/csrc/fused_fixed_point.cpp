// Fused per-sample fixed-point loops for the CPU (built on first use by lightning_implicit/implicit/fused.py).
//
// Both loops run the paper's stopping rule exactly: a sample stops at its first iterate x_{t+1} whose residual
// ||x_{t+1} - x_t||_inf is below tol (abs) or tol * max(1, ||x_{t+1}||_inf) (rel), or at max_iter; its result is
// that iterate, its count t + 1, its residual, and whether it met the threshold. One matrix product per iteration
// (the BLAS torch uses: called directly where it is MKL, else through ATen's addmm), then one pass over the product
// that applies the ReLU (forward), computes every residual and records finished samples. No Python, no allocation
// and no host synchronisation per iteration. Three layouts (`layout`, chosen by the caller from measured costs):
//
// - kColumns (0, small problems): every sample runs until the last one stops (a finished sample sits on its
//   fixed point and is recorded once), so the results do not depend on the other samples, bit for bit. The
//   iterates are kept (n, batch), samples along the contiguous dimension (the Python loop's layout and product):
//   the pass vectorises across samples with their running maxima in registers (iterate_cols).
// - kColumnsDropping (2): the same, but once a quarter of the samples present have finished, their columns leave
//   the arrays (a pass over each), so the products cost about the per-sample counts (a sample's rounding may then
//   depend on the batch's width).
// - kRows (1, large problems): batch-first rows; finished rows leave the batch in the same pass (a stable
//   in-place compaction), so the products cost the per-sample iteration counts, not the slowest sample's
//   (iterate).
//
//   picard(A, BU, x0, tol, rel, max_iter, layout, blas)      x <- relu(BU + x A^T)  (the forward state equation)
//   adjoint(A, d, g, tol, rel, max_iter, layout, blas)       w <- g + (d * w) A     (its implicit backward, from w = g)
//
// Both return (x (batch, n), iterations int64 (batch,), residual (batch,), converged bool (batch,), and the number
// of samples that did not converge).
//
//   project_rows_l1(A, kappa, inplace)   the well-posedness projection of A's rows (expected linear time per row)

#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <tuple>
#include <type_traits>
#include <vector>

namespace {

constexpr int64_t kColumns = 0, kRows = 1, kColumnsDropping = 2;  // the loops' layouts (see above)
// kColumnsDropping drops once the finishes since the last drop span (iterations x n) >= this (see iterate_cols)
constexpr int64_t kDropSpan = 160;

void check_inputs(const torch::Tensor& A, const torch::Tensor& rows, const char* what) {
  TORCH_CHECK(A.device().is_cpu() && rows.device().is_cpu(), what, ": CPU tensors only");
  TORCH_CHECK(A.dim() == 2 && A.size(0) == A.size(1), what, ": A must be square, got ", A.sizes());
  TORCH_CHECK(rows.dim() == 2 && rows.size(1) == A.size(0), what, ": expected (batch, ", A.size(0), "), got ",
              rows.sizes());
  TORCH_CHECK(rows.scalar_type() == A.scalar_type(), what, ": dtypes differ");
}

// One row after the product, in one pass: the ReLU (forward; NaN stays NaN, as torch.relu), the residual
// ||next - prev||_inf and, for the rel rule, the scale ||next||_inf. NaN propagates into the residual (a sample
// with a NaN never counts as converged). Written for the vectoriser (max reductions, NaN as a flag).
// BIAS: the product was written without its bias (BLAS's beta = 0), which is added here first (one pass less
// than copying the bias rows into place before each product).
template <typename T, bool RELU, bool REL, bool BIAS>
inline T row_pass(T* __restrict row, const T* __restrict prev, const T* __restrict bias, int64_t n, T& scale) {
  T r = 0, s = 0;
  int bad = 0;
#pragma omp simd reduction(max : r, s) reduction(| : bad)
  for (int64_t k = 0; k < n; ++k) {
    T v = row[k];
    if (BIAS) {
      v = v + bias[k];
      if (!RELU) row[k] = v;
    }
    if (RELU) {
      v = v < T(0) ? T(0) : v;
      row[k] = v;
    }
    const T d = std::abs(v - prev[k]);
    r = r < d ? d : r;
    if (REL) {
      const T a = RELU ? v : std::abs(v);
      s = s < a ? a : s;
    }
    bad |= (d != d);
  }
  scale = s;
  return bad ? std::numeric_limits<T>::quiet_NaN() : r;
}

// v = d * w (the adjoint's input to the product).
template <typename T>
void multiply(T* __restrict v, const T* __restrict d, const T* __restrict w, int64_t count) {
#pragma omp simd
  for (int64_t k = 0; k < count; ++k) v[k] = d[k] * w[k];
}

// ------------------------------------------------------------------------------------------ large problems
// One pass after the product: (ReLU,) stopping test, recording of finished rows, and a stable in-place compaction
// of the running rows of `next` (`idx`: each row's sample). Returns the rows still running. The adjoint (`v`
// given) also prepares the next product's input v = d * w for every row still running, while the row is in cache
// (`d` is the caller's, in the samples' order: the per-sample constants never move).
// `bias` (the samples' bias rows, in their order; null: already in `next`) is added to each row first.
template <typename T, bool RELU, bool REL>
int64_t finish_rows(T* next, const T* prev, const T* bias, std::vector<int64_t>& idx, int64_t m, int64_t n,
                    int64_t t, int64_t max_iter, double tol, T* v, const T* d, T* out, T* res_out, int64_t* its_out,
                    bool* conv_out, int64_t& unconverged) {
  int64_t keep = 0;
  const size_t row_bytes = sizeof(T) * static_cast<size_t>(n);
  const T tol_t = static_cast<T>(tol);
  for (int64_t r = 0; r < m; ++r) {
    T* row = next + r * n;
    const int64_t j = idx[r];
    T scale;
    const T res = bias != nullptr ? row_pass<T, RELU, REL, true>(row, prev + r * n, bias + j * n, n, scale)
                                  : row_pass<T, RELU, REL, false>(row, prev + r * n, nullptr, n, scale);
    const T thr = REL ? tol_t * std::max(T(1), scale) : tol_t;
    const bool done = res < thr;
    if (done || t == max_iter) {
      std::memcpy(out + j * n, row, row_bytes);
      res_out[j] = res;
      its_out[j] = t;
      conv_out[j] = done;
      unconverged += !done;
    } else {
      if (keep != r) {
        std::memcpy(next + keep * n, row, row_bytes);
        idx[keep] = j;
      }
      if (v != nullptr) multiply(v + keep * n, d + j * n, next + keep * n, n);
      ++keep;
    }
  }
  return keep;
}

// The BLAS torch links (MKL in the x86 wheels exports the Fortran symbols): called directly, a product skips
// ATen's dispatcher and checks (~1 us, as much as the product itself at n = 20, batch 64). Weak: where the
// symbols are absent the loop calls ATen instead (same BLAS underneath on x86: same results, bit for bit).
extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*, const int*,
            const float*, const int*, const float*, float*, const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*, const int*,
            const double*, const int*, const double*, double*, const int*) __attribute__((weak));
}

// C += op(A) op(B) in BLAS's column-major terms (alpha = beta = 1); false where the symbol is absent.
template <typename T>
bool blas_gemm(const char* ta, const char* tb, int m, int n, int k, const T* A, int lda, const T* B, int ldb, T* C,
               int ldc, T beta = 1) {
  const T one = 1;
  lda = std::max(lda, 1), ldb = std::max(ldb, 1), ldc = std::max(ldc, 1);  // (BLAS rejects 0)
  if constexpr (std::is_same_v<T, float>) {
    if (sgemm_ == nullptr) return false;
    sgemm_(ta, tb, &m, &n, &k, &one, A, &lda, B, &ldb, &beta, C, &ldc);
  } else {
    if (dgemm_ == nullptr) return false;
    dgemm_(ta, tb, &m, &n, &k, &one, A, &lda, B, &ldb, &beta, C, &ldc);
  }
  return true;
}

// Whether the sizes fit BLAS's 32-bit integers.
inline bool fits_int(int64_t a, int64_t b) {
  return a <= std::numeric_limits<int>::max() && b <= std::numeric_limits<int>::max();
}

// Y += X A^T (transpose_A, the forward) or Y += X A (the adjoint), all row-major, X and Y (rows, n), A (n, n).
// (In BLAS's column-major terms: Y^T += A X^T resp. A^T X^T, with row-major A read as A^T.)
// `blas`: call the BLAS symbols directly (only where the caller knows them to be MKL's 32-bit-integer interface).
template <typename T>
void add_product(T* Y, const T* X, const T* A, int64_t rows, int64_t n, bool transpose_A, bool blas,
                 const torch::TensorOptions& options, bool overwrite = false) {
  const int ni = static_cast<int>(n), ri = static_cast<int>(rows);
  if (blas && fits_int(rows, n) &&
      blas_gemm<T>(transpose_A ? "T" : "N", "N", ni, ri, ni, A, ni, X, ni, Y, ni, overwrite ? T(0) : T(1))) {
    return;
  }
  auto y = torch::from_blob(Y, {rows, n}, options);
  auto x = torch::from_blob(const_cast<T*>(X), {rows, n}, options);
  auto a = torch::from_blob(const_cast<T*>(A), {n, n}, options);
  if (overwrite) {
    at::mm_out(y, x, transpose_A ? a.t() : a);
  } else {
    y.addmm_(x, transpose_A ? a.t() : a);
  }
}

// x, iterations, residual, converged, and the number of samples that did not converge
using Solve = std::tuple<torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor, int64_t>;

struct Result {
  torch::Tensor out, its, res, conv;
  // (every row is recorded exactly once, at the latest at max_iter: no initial values needed)
  Result(int64_t b, int64_t n, const torch::TensorOptions& o)
      : out(torch::empty({b, n}, o)),
        its(torch::empty({b}, o.dtype(torch::kInt64))),
        res(torch::empty({b}, o)),
        conv(torch::empty({b}, o.dtype(torch::kBool))) {}
  int64_t unconverged = 0;
  Solve get() const { return {out, its, res, conv, unconverged}; }
};

// The compacting loop shared by both iterations: x_{t+1} = bias + (pre(x_t)) op(A), then finish_rows.
//   picard:  bias = B u, pre = identity, op(A) = A^T, ReLU after the product
//   adjoint: bias = g, pre = d * (.), op(A) = A
// `x` is a private buffer (its rows move as samples finish); `bias` and `d` are the caller's (read only: each
// iteration gathers the running samples' bias rows by index, so no copies of them are made).
template <typename T>
void iterate(const torch::Tensor& A, torch::Tensor bias, torch::Tensor d, torch::Tensor x, int64_t n, double tol,
             bool rel, int64_t max_iter, bool forward, bool blas, Result& R, bool start_at_bias = false,
             bool zero_start = false) {
  const int64_t b = bias.size(0);
  const auto options = bias.options();
  auto nxt = torch::empty({b, n}, options);
  auto v = forward ? torch::Tensor() : torch::empty({b, n}, options);
  const T* pA = A.data_ptr<T>();
  T* cur = x.data_ptr<T>();
  T* next = nxt.data_ptr<T>();
  const T* pbias = bias.data_ptr<T>();
  const T* pd = forward ? nullptr : d.data_ptr<T>();
  std::vector<int64_t> idx(b);
  std::iota(idx.begin(), idx.end(), 0);
  const size_t bytes = sizeof(T) * static_cast<size_t>(n);
  // the row pass, specialised once per call: ReLU (forward) and the rel scale only where needed
  const auto finish = forward ? (rel ? finish_rows<T, true, true> : finish_rows<T, true, false>)
                              : (rel ? finish_rows<T, false, true> : finish_rows<T, false, false>);
  int64_t m = b;  // rows still running (the product's height)
  T* pv = forward ? nullptr : v.data_ptr<T>();
  // `start_at_bias`: the iterate starts equal to the bias (the adjoint's w = g) and `x` is only scratch: the first
  // iteration reads the bias rows (in the samples' order, as all rows are then) as its previous iterate
  const T* first = start_at_bias ? pbias : cur;
  if (!forward) multiply(pv, pd, first, b * n);  // later ones: in finish_rows
  for (int64_t t = 1; t <= max_iter && m > 0; ++t) {
    // next = the product alone (beta = 0), its bias rows added in the pass after it (no copy of them first)
    const bool product = !(zero_start && t == 1);
    if (product) {
      add_product(next, forward ? cur : pv, pA, m, n, forward, blas, options, /*overwrite=*/true);
    } else {  // (the first iterate from zero: the bias alone; no sample has left yet)
      std::memcpy(next, pbias, bytes * m);
    }
    m = finish(next, t == 1 ? first : cur, product ? pbias : nullptr, idx, m, n, t, max_iter, tol, pv, pd,
               R.out.data_ptr<T>(),
               R.res.data_ptr<T>(), R.its.data_ptr<int64_t>(), R.conv.data_ptr<bool>(), R.unconverged);
    std::swap(cur, next);
  }
}

// ------------------------------------------------------------------------------------------ small problems
// Iterates (n, batch) row-major, the Python loop's layout and products (same results bit for bit); the pass after
// each product vectorises across samples instead of running n-element reductions row by row. A sample is
// recorded (copied out of its column) once, at its first iterate below the threshold.

// A 64-byte aligned scratch buffer (as torch's allocator gives: BLAS may round differently on other alignments).
template <typename T>
struct Scratch {
  T* p = nullptr;
  explicit Scratch(int64_t count) {
    const size_t bytes = (sizeof(T) * static_cast<size_t>(std::max<int64_t>(count, 1)) + 63) / 64 * 64;
    p = static_cast<T*>(std::aligned_alloc(64, bytes));
    TORCH_CHECK(p != nullptr, "fused loop: out of memory (", bytes, " bytes)");
  }
  ~Scratch() { std::free(p); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

// dst (n, b) = src (b, n)^T
template <typename T>
void transpose_into(T* __restrict dst, const T* __restrict src, int64_t b, int64_t n) {
  for (int64_t j = 0; j < b; ++j)
    for (int64_t k = 0; k < n; ++k) dst[k * b + j] = src[j * n + k];
}

// Y (n, b) += op(A) X (n, b), row-major: A X (the forward, A x^T) or A^T X (the adjoint). In BLAS's column-major
// terms Y^T (b, n) += X^T A^T resp. X^T A, with row-major A read as A^T (ATen's addmm makes the same call for the
// Python loop's (n, b) products with b > 1; the tests check the results agree bit for bit).
template <typename T>
void add_product_cols(T* Y, const T* X, const T* A, int64_t b, int64_t n, bool forward, bool blas,
                      const torch::TensorOptions& options) {
  const int bi = static_cast<int>(b), ni = static_cast<int>(n);
  if (blas && fits_int(b, n) && blas_gemm<T>("N", forward ? "N" : "T", bi, ni, ni, X, bi, A, ni, Y, bi)) {
    return;
  }
  auto y = torch::from_blob(Y, {n, b}, options);
  auto x = torch::from_blob(const_cast<T*>(X), {n, b}, options);
  auto a = torch::from_blob(const_cast<T*>(A), {n, n}, options);
  y.addmm_(forward ? a : a.t(), x);
}

// The pass after a product over W adjacent samples (columns) of the (n, ld) iterates `next` (previous: `prev`):
// the ReLU (forward), each sample's residual max_k |next - prev| (NaN: flagged in `bad`) and, for the rel rule, its
// scale max_k |next|; the adjoint also writes the next product's input v = d * next. Outputs r, s, bad (W each).
template <typename T, bool FORWARD, bool REL, int64_t W>
inline void column_pass(T* __restrict next, const T* __restrict prev, const T* __restrict d, T* __restrict v,
                        int64_t ld, int64_t n, T* __restrict r_out, T* __restrict s_out, T* __restrict bad_out) {
  T r[W] = {}, s[W] = {}, bad[W] = {};
  for (int64_t k = 0; k < n; ++k) {
    T* __restrict row = next + k * ld;
    const T* __restrict p = prev + k * ld;
#pragma omp simd
    for (int64_t j = 0; j < W; ++j) {
      T x = row[j];
      if (FORWARD) {
        x = x < T(0) ? T(0) : x;
        row[j] = x;
      } else {
        v[k * ld + j] = d[k * ld + j] * x;
      }
      const T dd = std::abs(x - p[j]);
      r[j] = r[j] < dd ? dd : r[j];
      if (REL) {
        const T a = FORWARD ? x : std::abs(x);
        s[j] = s[j] < a ? a : s[j];
      }
      bad[j] = dd != dd ? T(1) : bad[j];
    }
  }
  for (int64_t j = 0; j < W; ++j) {
    r_out[j] = r[j];
    s_out[j] = s[j];
    bad_out[j] = bad[j];
  }
}

// Drop the columns j with `gone[j]` of the (n, m) row-major array `p` in place: it becomes (n, m') with the other
// columns in order (each element moves to a lower address: one forward pass).
template <typename T>
void drop_columns(T* p, int64_t n, int64_t m, const std::vector<char>& gone) {
  int64_t w = 0;
  for (int64_t k = 0; k < n; ++k) {
    const T* row = p + k * m;
    for (int64_t j = 0; j < m; ++j) {
      if (!gone[j]) p[w++] = row[j];
    }
  }
}

// The loop for small problems: samples along columns. `bias`, `d` and `x0` are (b, n) row-major (`d` only for the
// adjoint; `x0` may be null: start at zero, or for the adjoint at `bias`). `drop`: once a quarter of the columns
// have finished, they leave the arrays (one pass over each, O(n b): cheap next to the products, so the products
// then cost about the per-sample counts; a few finished ones stay so that the width remains a multiple of W); without it every sample runs until the last one stops and a sample's
// result does not depend on the batch's width, bit for bit.
template <typename T, bool FORWARD, bool REL>
void iterate_cols(const T* A, const T* bias, const T* d, const T* x0, int64_t b, int64_t n, double tol,
                  int64_t max_iter, bool drop, bool blas, const torch::TensorOptions& options, Result& R,
                  bool zero_start) {
  const int64_t size = b * n;
  Scratch<T> cur_s(size), next_s(size), bias_s(size), d_s(FORWARD ? 1 : size), v_s(FORWARD ? 1 : size);
  Scratch<T> r_s(b), s_s(b), bad_s(b);
  T *cur = cur_s.p, *next = next_s.p, *biasT = bias_s.p, *dT = d_s.p, *v = v_s.p;
  T *r = r_s.p, *s = s_s.p, *bad = bad_s.p;
  transpose_into(biasT, bias, b, n);
  if (x0 != nullptr) transpose_into(cur, x0, b, n);
  else if (FORWARD) std::fill(cur, cur + size, T(0));
  else std::memcpy(cur, biasT, sizeof(T) * size);
  if (!FORWARD) {
    transpose_into(dT, d, b, n);
    multiply(v, dT, cur, size);
  }
  std::vector<char> recorded(b, 0), gone(b, 0);  // per column present: finished; leaving now
  std::vector<int64_t> idx(b);       // the sample of each column present
  std::iota(idx.begin(), idx.end(), 0);
  T* out = R.out.data_ptr<T>();
  T* res_out = R.res.data_ptr<T>();
  int64_t* its_out = R.its.data_ptr<int64_t>();
  bool* conv_out = R.conv.data_ptr<bool>();
  const T tol_t = static_cast<T>(tol);
  int64_t running = b, m = b;  // samples still running; columns present (m >= running)
  int64_t first_done = 0;      // the iteration of the first finish since the last drop (0: none yet)
  int64_t kept_done = 0;       // finished columns kept by the last drop (padding)
  for (int64_t t = 1; t <= max_iter && running > 0; ++t) {
    std::memcpy(next, biasT, sizeof(T) * n * m);
    if (!(zero_start && t == 1)) add_product_cols(next, FORWARD ? cur : v, A, m, n, FORWARD, blas, options);
    // the ReLU, the residuals and the scales (and the adjoint's next d * w): blocks of W samples keep their
    // running maxima in registers down the n rows; the last partial block goes through the same code at width 1
    constexpr int64_t W = 64 / sizeof(T);  // one cache line of each row
    int64_t j0 = 0;
    for (; j0 + W <= m; j0 += W) {
      column_pass<T, FORWARD, REL, W>(next + j0, cur + j0, FORWARD ? nullptr : dT + j0, FORWARD ? nullptr : v + j0,
                                      m, n, r + j0, s + j0, bad + j0);
    }
    for (; j0 < m; ++j0) {
      column_pass<T, FORWARD, REL, 1>(next + j0, cur + j0, FORWARD ? nullptr : dT + j0, FORWARD ? nullptr : v + j0,
                                      m, n, r + j0, s + j0, bad + j0);
    }
    for (int64_t j = 0; j < m; ++j) {  // the stopping test; a finished sample is copied out once
      if (recorded[j]) continue;
      const T res = bad[j] != T(0) ? std::numeric_limits<T>::quiet_NaN() : r[j];
      const T thr = REL ? tol_t * std::max(T(1), s[j]) : tol_t;
      const bool done = res < thr;
      if (!done && t < max_iter) continue;
      const int64_t i = idx[j];
      T* dst = out + i * n;
      for (int64_t k = 0; k < n; ++k) dst[k] = next[k * m + j];
      res_out[i] = res;
      its_out[i] = t;
      conv_out[i] = done;
      R.unconverged += !done;
      recorded[j] = 1;
      --running;
    }
    std::swap(cur, next);
    // the finished columns leave once a quarter of the columns have finished (as many as leave a multiple of W
    // columns: the products and the passes stay on full blocks), if the finishes have spread over a while
    // ((iterations since the first) x n >= kDropSpan: 8 iterations at n = 20): a drop costs a pass over the n x m
    // elements of each array (~1 / n of an iteration's product each), which a batch finishing within a few
    // iterations never earns back (signed weights at n = 20, batch 256: +25 % per solve without this rule)
    if (first_done == 0 && m - running > kept_done) first_done = t;
    const int64_t keep = std::min(m, (running + W - 1) / W * W);
    if (drop && running > 0 && 4 * (m - running) >= m && keep < m && (t - first_done + 1) * n >= kDropSpan) {
      int64_t leaving = m - keep;
      for (int64_t j = 0; j < m; ++j) {
        gone[j] = recorded[j] && leaving > 0;
        leaving -= gone[j];
      }
      drop_columns(cur, n, m, gone);
      drop_columns(biasT, n, m, gone);
      if (!FORWARD) {
        drop_columns(dT, n, m, gone);
        drop_columns(v, n, m, gone);
      }
      int64_t w = 0;
      for (int64_t j = 0; j < m; ++j) {
        if (!gone[j]) {
          idx[w] = idx[j];
          recorded[w++] = recorded[j];
        }
      }
      m = w;
      kept_done = m - running;
      first_done = 0;
    }
  }
}

template <typename T, bool FORWARD>
void iterate_cols(const T* A, const T* bias, const T* d, const T* x0, int64_t b, int64_t n, double tol, bool rel,
                  int64_t max_iter, bool drop, bool blas, const torch::TensorOptions& options, Result& R,
                  bool zero_start = false) {
  if (rel) iterate_cols<T, FORWARD, true>(A, bias, d, x0, b, n, tol, max_iter, drop, blas, options, R, zero_start);
  else iterate_cols<T, FORWARD, false>(A, bias, d, x0, b, n, tol, max_iter, drop, blas, options, R, zero_start);
}

// Whether every entry is finite (x - x is 0 exactly for finite x, NaN otherwise).
template <typename T>
bool all_finite(const T* p, int64_t count) {
  int bad = 0;
#pragma omp simd reduction(| : bad)
  for (int64_t k = 0; k < count; ++k) bad |= !(p[k] - p[k] == T(0));
  return bad == 0;
}

// A forward solve from x = 0 skips the first product: x_1 = relu(B u + 0 A^T) = relu(B u) exactly (the product
// adds only zeros) where A is finite (0 * inf would be NaN: then the product runs, as in the reference).
bool zero_start_skips(const torch::Tensor& A, bool from_zero) {
  if (!from_zero) return false;
  bool finite = true;
  AT_DISPATCH_FLOATING_TYPES(A.scalar_type(), "all_finite",
                             [&] { finite = all_finite<scalar_t>(A.data_ptr<scalar_t>(), A.numel()); });
  return finite;
}

// A read-only (b, n) input in the loop's dtype, contiguous (the caller's tensor where it already is).
torch::Tensor input_of(const torch::Tensor& t, const torch::Tensor& like) {
  return t.scalar_type() == like.scalar_type() && t.is_contiguous() ? t : t.to(like.scalar_type()).contiguous();
}

// A private contiguous copy in the loop's dtype (one copy).
torch::Tensor private_copy(const torch::Tensor& t, const torch::Tensor& like) {
  return torch::empty(t.sizes(), like.options()).copy_(t);
}

Solve picard(torch::Tensor A, torch::Tensor BU, c10::optional<torch::Tensor> x0, double tol, bool rel,
             int64_t max_iter, int64_t layout, bool blas) {
  check_inputs(A, BU, "picard");
  TORCH_CHECK(max_iter >= 1, "picard: max_iter must be >= 1");
  TORCH_CHECK(!x0 || x0->sizes() == BU.sizes(), "picard: x0 must have BU's shape");
  const int64_t b = BU.size(0), n = BU.size(1);
  Result R(b, n, BU.options());
  auto Ac = A.is_contiguous() ? A : A.contiguous();
  TORCH_CHECK(layout >= 0 && layout <= 2, "picard: layout must be 0, 1 or 2");
  const bool skip = zero_start_skips(Ac, !x0);
  if (layout != kRows) {
    auto bias = input_of(BU, BU);
    auto x = x0 ? input_of(*x0, BU) : torch::Tensor();
    AT_DISPATCH_FLOATING_TYPES(BU.scalar_type(), "picard", [&] {
      iterate_cols<scalar_t, true>(Ac.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(), nullptr,
                                   x0 ? x.data_ptr<scalar_t>() : nullptr, b, n, tol, rel, max_iter,
                                   layout == kColumnsDropping, blas, BU.options(), R, skip);
    });
    return R.get();
  }
  // the iterate: a private buffer (rows move); B u read in place
  auto x = x0 ? private_copy(*x0, BU) : torch::zeros({b, n}, BU.options());
  auto bias = input_of(BU, BU);
  AT_DISPATCH_FLOATING_TYPES(BU.scalar_type(), "picard", [&] {
    iterate<scalar_t>(Ac, bias, torch::Tensor(), x, n, tol, rel, max_iter, /*forward=*/true, blas, R, false, skip);
  });
  return R.get();
}

Solve adjoint(torch::Tensor A, torch::Tensor d, torch::Tensor g, double tol, bool rel, int64_t max_iter,
              int64_t layout, bool blas) {
  check_inputs(A, g, "adjoint");
  TORCH_CHECK(max_iter >= 1, "adjoint: max_iter must be >= 1");
  TORCH_CHECK(d.sizes() == g.sizes(), "adjoint: d and g must have one shape");
  const int64_t b = g.size(0), n = g.size(1);
  Result R(b, n, g.options());
  auto Ac = A.is_contiguous() ? A : A.contiguous();
  TORCH_CHECK(layout >= 0 && layout <= 2, "adjoint: layout must be 0, 1 or 2");
  if (layout != kRows) {
    auto bias = input_of(g, g), dd = input_of(d, g);
    AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "adjoint", [&] {
      iterate_cols<scalar_t, false>(Ac.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(), dd.data_ptr<scalar_t>(),
                                    nullptr, b, n, tol, rel, max_iter, layout == kColumnsDropping, blas,
                                    g.options(), R);
    });
    return R.get();
  }
  // g and d read in place; the iterate starts at g, so its (private) buffer needs no copy of it
  auto w = torch::empty({b, n}, g.options()), bias = input_of(g, g), dd = input_of(d, g);
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "adjoint", [&] {
    iterate<scalar_t>(Ac, bias, dd, w, n, tol, rel, max_iter, /*forward=*/false, blas, R, /*start_at_bias=*/true);
  });
  return R.get();
}

// The implicit layer's autograd node in two calls, with the products around the solves made here rather than as
// separate Python operations (each costs a few us of Python and dispatch, as much as a solve at n = 20; the same ATen
// kernels on the same operands, so the results are those of the operations written out in Python, bit for bit):
//
//   layer_forward(A, B, u, x0, C, D, ...)    BU = u B^T, x = picard(A, BU, x0), and with C, D: y = u D^T + x C^T.
//       Returns (y (undefined without C), x, iterations, residual, converged, number not converged).
//   layer_backward(A, B, u, x, C, D, g_out, need, ...)   the ReLU layer's implicit backward from g_out = dL/dy (with C,
//       D; else dL/dx): g = g_out C, d = sign(x) (relu' at the fixed point), w = adjoint(A, d, g), v = d * w, and the
//       gradients the mask `need` (A, B, u, C, D) asks for: dA = v^T x, dB = v^T u, du = v B (+ g_out D),
//       dC = g_out^T x, dD = g_out^T u. Returns (dA, dB, du, dC, dD, w, d, g, iterations, residual, converged,
//       number not converged); the caller redoes v and the gradients where it changes w (a direct solve of the
//       samples left unconverged).
// op(P) op(Q) for row-major P, Q (op: transposed where tP / tQ): with `blas`, P and Q contiguous and of the loop's
// dtype, one direct BLAS call (row-major out = col-major out^T = op(Q)^T op(P)^T; ATen's mm makes the same call,
// ~1 us more through its dispatcher and checks), else ATen's mm.
torch::Tensor product(const torch::Tensor& P, bool tP, const torch::Tensor& Q, bool tQ, bool blas) {
  const int64_t r = tP ? P.size(1) : P.size(0), k = tP ? P.size(0) : P.size(1), c = tQ ? Q.size(0) : Q.size(1);
  const auto st = P.scalar_type();
  if (blas && P.is_contiguous() && Q.is_contiguous() && Q.scalar_type() == st &&
      (st == torch::kFloat || st == torch::kDouble) && fits_int(r, c) && fits_int(k, P.size(1) + Q.size(1))) {
    auto out = torch::empty({r, c}, P.options());
    bool done = false;
    AT_DISPATCH_FLOATING_TYPES(st, "product", [&] {
      done = blas_gemm<scalar_t>(tQ ? "T" : "N", tP ? "T" : "N", static_cast<int>(c), static_cast<int>(r),
                                 static_cast<int>(k), Q.data_ptr<scalar_t>(), static_cast<int>(Q.size(1)),
                                 P.data_ptr<scalar_t>(), static_cast<int>(P.size(1)), out.data_ptr<scalar_t>(),
                                 static_cast<int>(c), scalar_t(0));
    });
    if (done) return out;
  }
  return (tP ? P.t() : P).mm(tQ ? Q.t() : Q);
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor, int64_t> layer_forward(
    torch::Tensor A, torch::Tensor B, torch::Tensor u, c10::optional<torch::Tensor> x0, c10::optional<torch::Tensor> C,
    c10::optional<torch::Tensor> D, double tol, bool rel, int64_t max_iter, int64_t layout, bool blas) {
  TORCH_CHECK(C.has_value() == D.has_value(), "layer_forward: C and D go together");
  auto BU = u.mm(B.t());
  auto [x, its, res, conv, bad] = picard(A, BU, x0, tol, rel, max_iter, layout, blas);
  torch::Tensor y;
  if (C) y = at::addmm(u.mm(D->t()), x, C->t());
  return {y, x, its, res, conv, bad};
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor,
           torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor, int64_t>
layer_backward(torch::Tensor A, torch::Tensor B, torch::Tensor u, torch::Tensor x, c10::optional<torch::Tensor> C,
               c10::optional<torch::Tensor> D, torch::Tensor g_out, std::vector<bool> need, double tol, bool rel,
               int64_t max_iter, int64_t layout, bool blas) {
  TORCH_CHECK(C.has_value() == D.has_value(), "layer_backward: C and D go together");
  TORCH_CHECK(need.size() == 5, "layer_backward: need has 5 flags (A, B, u, C, D)");
  torch::Tensor gA, gB, gu, gC, gD, g = g_out;
  if (C) {  // y = x C^T + u D^T
    if (need[3]) gC = product(g_out, true, x, false, blas);
    if (need[4]) gD = product(g_out, true, u, false, blas);
    g = product(g_out, false, *C, false, blas);
  }
  auto d = x.sign();
  auto [w, its, res, conv, bad] = adjoint(A, d, g, tol, rel, max_iter, layout, blas);
  torch::Tensor v;  // v = d * w (both contiguous: a plain loop, no TensorIterator)
  if (d.is_contiguous() && w.is_contiguous() && d.scalar_type() == w.scalar_type()) {
    v = torch::empty(w.sizes(), w.options());
    AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "layer_backward", [&] {
      multiply(v.data_ptr<scalar_t>(), d.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), w.numel());
    });
  } else {
    v = d * w;
  }
  if (need[0]) gA = product(v, true, x, false, blas);
  if (need[1]) gB = product(v, true, u, false, blas);
  if (need[2]) gu = C ? at::addmm(g_out.mm(*D), v, B) : v.mm(B);
  return {gA, gB, gu, gC, gD, w, d, g, its, res, conv, bad};
}

// Euclidean projection of each row onto the L1 ball of radius kappa: x = sign(a) max(|a| - theta, 0) with theta the
// root of sum_k max(|a_k| - theta, 0) = kappa (the entries above theta: its active set). Per row, in expected linear
// time (the sort-and-threshold method of Duchi et al. sorts: O(n log n)):
//  1. one vectorised pass: ||a||_1 and max |a|; a row inside the ball is left there (read once, bit for bit);
//  2. the candidates: the entries above a lower bound of theta, max(max |a| - kappa, (||a||_1 - kappa) / n)
//     (theta = (sum of the active set - kappa) / its size is at least both; far outside the ball this leaves a
//     handful), gathered by a branch-free pass; while they are most of the row (just outside the ball, as after
//     an optimiser step), Michelot's steps run over the whole row with a mask first (vectorised, no gathering:
//     2-2.6x faster at n = 500-1000 for rows at 1.05 and 3 kappa, and at n = 100 after an Adam step);
//  3. Michelot's fixed point on the candidates (a few branch-free passes), and where it is slow Condat's algorithm
//     ("Fast projection onto the simplex and the l1 ball", Math. Program. 2016, Algorithm 1), its running
//     threshold kept as (sum - kappa) / count and compared by multiplication (no division in the loop), find the
//     active set;
//  4. theta = (sum of the active set - kappa) / its size (the sort-based formula, in double precision: both agree
//     to rounding), and one pass writes the row.
// Rows with a non-finite entry become NaN. `src` and `dst` may be the same rows (in place); `c` and `w` are scratch
// buffers of n doubles.
template <typename T>
double l1_threshold(const T* __restrict row, int64_t n, double kap, double lower, int64_t passes,
                    double* __restrict c, double* __restrict w) {
  // 2a. While the set above the bound is dense (a row just outside the ball, as after an optimiser step: nearly
  // every entry is active), Michelot's step runs over the whole row with a mask: one vectorised pass of sums and
  // counts each, no gathering (the set {|a| > bound} shrinks to the active set; once a pass keeps the count, the
  // bound is theta). A sparse set (a row far outside) is gathered instead (2b), and Michelot runs on it.
  int64_t before = -1;
  for (; passes > 0; --passes) {
    double sum = 0;
    int64_t count = 0;
#pragma omp simd reduction(+ : sum, count)
    for (int64_t k = 0; k < n; ++k) {
      const double y = std::abs(static_cast<double>(row[k]));
      const bool in = y > lower;
      sum += in ? y : 0.0;
      count += in;
    }
    if (count == before) return lower;
    if (count == 0 || count * 8 < n) break;
    before = count;
    lower = (sum - kap) / static_cast<double>(count);
  }
  int64_t m = 0;  // 2b. the candidates
  for (int64_t k = 0; k < n; ++k) {
    const double y = std::abs(static_cast<double>(row[k]));
    c[m] = y;
    m += y > lower;
  }
  // Michelot's step on the candidates, a branch-free pass each: the candidates contain the active set, so (their
  // sum - kappa) / their number is a lower bound of theta too; once a pass removes none, they are the active set
  // and that bound is theta. A few passes settle typical rows (~1.8 ns per entry in all at n = 1000, where
  // Condat's branchy loop alone takes ~2.4 ns); an adversarial row (one entry removed per pass: O(n^2)) goes on to
  // Condat after `passes`.
  for (int64_t pass = 0; pass < passes && m > 0; ++pass) {
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t k = 0; k < m; ++k) sum += c[k];
    const double bound = (sum - kap) / static_cast<double>(m);
    const int64_t before = m;
    m = 0;
    for (int64_t k = 0; k < before; ++k) {
      const double y = c[k];
      c[m] = y;
      m += y > bound;
    }
    if (m == before) return bound;
  }
  // 3. Condat: the set v (stored over the candidates already read, v[0..cnt)), its sum S; threshold (S - kap) / cnt
  double* v = c;
  int64_t cnt = 1, nw = 0;
  double S = c[0];
  for (int64_t k = 1; k < m; ++k) {
    const double y = c[k];
    if (y * static_cast<double>(cnt) > S - kap) {                    // y above the threshold
      if (S + y - kap > (y - kap) * static_cast<double>(cnt + 1)) {  // still above y - kappa with y in the set
        v[cnt++] = y;
        S += y;
      } else {  // y alone exceeds kappa more than the set does: set the set aside, restart it at y
        std::memcpy(w + nw, v, sizeof(double) * static_cast<size_t>(cnt));
        nw += cnt;
        v[0] = y;
        cnt = 1;
        S = y;
      }
    }
  }
  for (int64_t k = 0; k < nw; ++k) {
    const double y = w[k];
    if (y * static_cast<double>(cnt) > S - kap) {
      v[cnt++] = y;
      S += y;
    }
  }
  for (bool changed = true; changed;) {  // drop the set's values at or below the threshold
    changed = false;
    int64_t keep = 0;
    const int64_t size = cnt;
    for (int64_t k = 0; k < size; ++k) {
      const double y = v[k];
      if (y * static_cast<double>(cnt) > S - kap || cnt == 1) {
        v[keep++] = y;
      } else {
        S -= y;
        --cnt;
        changed = true;
      }
    }
    cnt = keep;
  }
  double sum = 0;  // 4.
  for (int64_t k = 0; k < cnt; ++k) sum += v[k];
  return (sum - kap) / static_cast<double>(cnt);
}

template <typename T>
int64_t project_rows(const T* src, T* dst, int64_t rows, int64_t n, double kappa, int64_t passes) {
  int64_t changed = 0;  // rows outside the ball (returned)
  std::vector<double> c(std::max<int64_t>(n, 1)), w(std::max<int64_t>(n, 1));
  const T kap = static_cast<T>(kappa);
  const size_t row_bytes = sizeof(T) * static_cast<size_t>(n);
  // (the L1 norm's rounding, relative: the lower bound of theta is taken below it)
  const double slack = 1.0 - 2.0 * static_cast<double>(n) * std::numeric_limits<T>::epsilon();
  for (int64_t r = 0; r < rows; ++r) {
    const T* a = src + r * n;
    T* out = dst + r * n;
    T s = 0, top = 0;  // 1.
#pragma omp simd reduction(+ : s) reduction(max : top)
    for (int64_t k = 0; k < n; ++k) {
      const T y = std::abs(a[k]);
      s += y;
      top = top < y ? y : top;
    }
    if (s <= kap) {
      if (out != a) std::memcpy(out, a, row_bytes);
      continue;
    }
    ++changed;
    if (!std::isfinite(s)) {
      std::fill(out, out + n, std::numeric_limits<T>::quiet_NaN());
      continue;
    }
    const double lower = std::max(static_cast<double>(top) - kappa,
                                  (static_cast<double>(s) * slack - kappa) / static_cast<double>(n));
    const T theta = static_cast<T>(l1_threshold(a, n, kappa, lower, passes, c.data(), w.data()));
#pragma omp simd
    for (int64_t k = 0; k < n; ++k) {
      const T x = a[k];
      const T d = std::abs(x) - theta;
      out[k] = std::copysign(d > T(0) ? d : T(0), x);
    }
  }
  return changed;
}

// The projection of a 2-d CPU A: a new contiguous tensor, or (`inplace`, A contiguous) A itself, changed in place.
// `passes`: Michelot passes at most before Condat's loop finishes (0: Condat's loop alone).
torch::Tensor project_rows_l1(torch::Tensor A, double kappa, bool inplace, int64_t passes) {
  TORCH_CHECK(A.device().is_cpu() && A.dim() == 2, "project_rows_l1: a 2-d CPU tensor, got ", A.sizes());
  TORCH_CHECK(kappa > 0, "project_rows_l1: kappa must be positive");
  TORCH_CHECK(!inplace || A.is_contiguous(), "project_rows_l1: in place needs a contiguous A");
  auto src = A.contiguous();
  auto out = inplace ? A : torch::empty(src.sizes(), src.options());
  int64_t changed = 0;
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "project_rows_l1", [&] {
    changed = project_rows<scalar_t>(src.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), src.size(0), src.size(1),
                                     kappa, passes);
  });
  // (in place: written through the raw data, so autograd's version counter is bumped here, as an in-place op
  // would, and a graph that saved A sees the change)
  if (inplace && changed > 0) torch::autograd::impl::bump_version(A);
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  // (the loops run without the GIL: other Python threads, e.g. data loading, go on meanwhile)
  using release = pybind11::call_guard<pybind11::gil_scoped_release>;
  m.def("picard", &picard, "Per-sample Picard iteration x <- relu(BU + x A^T) (batch-first)", release());
  m.def("layer_forward", &layer_forward, "u B^T, the Picard solve and the readout u D^T + x C^T", release());
  m.def("layer_backward", &layer_backward, "The ReLU layer's implicit backward with its gradient products",
        release());
  m.def("adjoint", &adjoint, "Per-sample adjoint iteration w <- g + (d * w) A (batch-first)", release());
  m.def("project_rows_l1", &project_rows_l1, "Rows of A onto the L1 ball of radius kappa (Condat's algorithm)",
        release());
}
