// Fused per-sample fixed-point loops for the CPU (built on first use by lightning_implicit/implicit/fused.py).
//
// Both loops run the paper's stopping rule exactly: a sample stops at its first iterate x_{t+1} whose residual
// ||x_{t+1} - x_t||_inf is below tol (abs) or tol * max(1, ||x_{t+1}||_inf) (rel), or at max_iter; its result is
// that iterate, its count t + 1, its residual, and whether it met the threshold. Batch-first (row-major (batch, n)):
// one matrix product per iteration (ATen's addmm, i.e. the BLAS torch uses) on the samples still running, then one
// pass over the product that applies the ReLU (forward), computes every residual and records finished samples;
// finished rows leave the batch in the same pass (a stable in-place compaction of contiguous rows), so the
// products cost the per-sample iteration counts, not the slowest sample's, and the loop's bookkeeping costs one
// read of the iterate. No Python, no allocation and no host synchronisation per iteration.
//
//   picard(A, BU, x0, tol, rel, max_iter, compact)      x <- relu(BU + x A^T)     (the forward state equation)
//   adjoint(A, d, g, w0, tol, rel, max_iter, compact)   w <- g + (d * w) A        (its implicit backward)
//
// `compact`: finished rows leave the batch (large problems, where the saved products pay); otherwise they keep
// iterating in place (results independent of the other samples bit for bit; see finish_rows).
//
// Both return (x (batch, n), iterations int64 (batch,), residual (batch,), converged bool (batch,)).
//
//   project_rows_l1(A, kappa)   the well-posedness projection of A's rows (one call instead of ~18 dispatches)

#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

namespace {

void check_inputs(const torch::Tensor& A, const torch::Tensor& rows, const char* what) {
  TORCH_CHECK(A.device().is_cpu() && rows.device().is_cpu(), what, ": CPU tensors only");
  TORCH_CHECK(A.dim() == 2 && A.size(0) == A.size(1), what, ": A must be square, got ", A.sizes());
  TORCH_CHECK(rows.dim() == 2 && rows.size(1) == A.size(0), what, ": expected (batch, ", A.size(0), "), got ",
              rows.sizes());
  TORCH_CHECK(rows.scalar_type() == A.scalar_type(), what, ": dtypes differ");
}

// The residual ||next - prev||_inf of one row and its rel scale ||next||_inf; NaN propagates into the residual
// (a sample with a NaN never counts as converged). Written for the vectoriser (max reductions, NaN as a flag).
template <typename T>
inline void row_residual(const T* __restrict next, const T* __restrict prev, int64_t n, T& res, T& scale) {
  T r = 0, s = 0;
  int bad = 0;
#pragma omp simd reduction(max : r, s) reduction(| : bad)
  for (int64_t k = 0; k < n; ++k) {
    const T d = std::abs(next[k] - prev[k]);
    const T a = std::abs(next[k]);
    r = r < d ? d : r;
    s = s < a ? a : s;
    bad |= (d != d);
  }
  res = bad ? std::numeric_limits<T>::quiet_NaN() : r;
  scale = s;
}

// One pass after the product: (ReLU,) stopping test, recording of finished rows, and compaction of the running
// rows of `next` and of the per-row constants `consts` (moved along with them).
//
// Without compaction (`compact` false) every row stays in place and keeps iterating until the last one finishes
// (a finished row sits on its fixed point; it is recorded once, the first time it meets the threshold): the
// product's width never changes, so a row's values do not depend on when the others stop, bit for bit (BLAS may
// round a row differently for different batch widths). Returns the rows still running (compaction: the rows
// kept; otherwise: the rows not yet recorded).
template <typename T>
int64_t finish_rows(T* next, const T* prev, const std::vector<T*>& consts, std::vector<int64_t>& idx, int64_t m,
                    int64_t n, int64_t t, int64_t max_iter, double tol, bool rel, bool relu, bool compact,
                    std::vector<char>& recorded, T* out, T* res_out, int64_t* its_out, bool* conv_out) {
  int64_t keep = 0;
  const size_t row_bytes = sizeof(T) * static_cast<size_t>(n);
  const T tol_t = static_cast<T>(tol);
  for (int64_t r = 0; r < m; ++r) {
    T* row = next + r * n;
    if (relu) {
#pragma omp simd
      for (int64_t k = 0; k < n; ++k) row[k] = row[k] < T(0) ? T(0) : row[k];  // NaN stays NaN, as torch.relu
    }
    const int64_t j = idx[r];
    if (!compact && recorded[j]) continue;
    T res, scale;
    row_residual(row, prev + r * n, n, res, scale);
    const T thr = rel ? tol_t * std::max(T(1), scale) : tol_t;
    const bool done = res < thr;
    if (done || t == max_iter) {
      std::memcpy(out + j * n, row, row_bytes);
      res_out[j] = res;
      its_out[j] = t;
      conv_out[j] = done;
      recorded[j] = 1;
    } else if (!compact) {
      ++keep;
    } else {
      if (keep != r) {
        std::memcpy(next + keep * n, row, row_bytes);
        for (T* c : consts) std::memcpy(c + keep * n, c + r * n, row_bytes);
        idx[keep] = idx[r];
      }
      ++keep;
    }
  }
  return keep;
}

// v = d * w over the running rows (a pragma cannot sit inside AT_DISPATCH's macro argument).
template <typename T>
void multiply(T* __restrict v, const T* __restrict d, const T* __restrict w, int64_t count) {
#pragma omp simd
  for (int64_t k = 0; k < count; ++k) v[k] = d[k] * w[k];
}

// The first m rows of each tensor, re-sliced only when m changes (a slice costs as much as a small product).
struct Rows {
  std::vector<torch::Tensor> full, view;
  int64_t m = -1;
  torch::Tensor& operator()(size_t i, int64_t rows) {
    if (rows != m) {
      view.clear();
      for (const auto& f : full) view.push_back(rows == f.size(0) ? f : f.narrow(0, 0, rows));
      m = rows;
    }
    return view[i];
  }
};

struct Result {
  torch::Tensor out, its, res, conv;
  Result(int64_t b, int64_t n, const torch::TensorOptions& o)
      : out(torch::empty({b, n}, o)),
        its(torch::zeros({b}, o.dtype(torch::kInt64))),
        res(torch::empty({b}, o)),
        conv(torch::zeros({b}, o.dtype(torch::kBool))) {}
  std::vector<torch::Tensor> list() const { return {out, its, res, conv}; }
};

// A per-row constant: the caller's tensor where rows stay in place, a private copy where they are compacted.
torch::Tensor rows_of(const torch::Tensor& t, const torch::Tensor& like, bool compact) {
  auto c = t.to(like.scalar_type()).contiguous();
  return compact && c.is_same(t) ? c.clone() : c;
}

std::vector<torch::Tensor> picard(torch::Tensor A, torch::Tensor BU, c10::optional<torch::Tensor> x0, double tol,
                                  bool rel, int64_t max_iter, bool compact) {
  check_inputs(A, BU, "picard");
  TORCH_CHECK(!x0 || x0->sizes() == BU.sizes(), "picard: x0 must have BU's shape");
  const int64_t b = BU.size(0), n = BU.size(1);
  Result R(b, n, BU.options());
  // rows: iterate buffers 0 and 1 (they alternate), and B u (compacted in place with them)
  Rows rows{{x0 ? x0->to(BU.scalar_type()).contiguous().clone() : torch::zeros({b, n}, BU.options()),
             torch::empty({b, n}, BU.options()), rows_of(BU, BU, compact)}};
  const auto At = A.t();
  std::vector<int64_t> idx(b);
  std::iota(idx.begin(), idx.end(), 0);
  std::vector<char> recorded(b, 0);
  int64_t m = b;        // rows in the product
  int64_t running = b;  // rows not yet recorded
  int cur = 0;
  AT_DISPATCH_FLOATING_TYPES(BU.scalar_type(), "picard", [&] {
    const std::vector<scalar_t*> consts{rows.full[2].data_ptr<scalar_t>()};
    for (int64_t t = 1; t <= max_iter && running > 0; ++t) {
      const int nxt = 1 - cur;
      at::addmm_out(rows(nxt, m), rows(2, m), rows(cur, m), At);
      running = finish_rows<scalar_t>(rows.full[nxt].data_ptr<scalar_t>(), rows.full[cur].data_ptr<scalar_t>(),
                                      consts, idx, m, n, t, max_iter, tol, rel, /*relu=*/true, compact, recorded,
                                      R.out.data_ptr<scalar_t>(), R.res.data_ptr<scalar_t>(),
                                      R.its.data_ptr<int64_t>(), R.conv.data_ptr<bool>());
      if (compact) m = running;
      cur = nxt;
    }
  });
  return R.list();
}

std::vector<torch::Tensor> adjoint(torch::Tensor A, torch::Tensor d, torch::Tensor g, torch::Tensor w0, double tol,
                                   bool rel, int64_t max_iter, bool compact) {
  check_inputs(A, g, "adjoint");
  TORCH_CHECK(d.sizes() == g.sizes() && w0.sizes() == g.sizes(), "adjoint: d, g and w0 must have one shape");
  const int64_t b = g.size(0), n = g.size(1);
  Result R(b, n, g.options());
  // rows: iterates 0 and 1, v = d * w, g, d
  Rows rows{{w0.contiguous().clone(), torch::empty({b, n}, g.options()), torch::empty({b, n}, g.options()),
             rows_of(g, g, compact), rows_of(d, g, compact)}};
  const auto Ac = A.contiguous();
  std::vector<int64_t> idx(b);
  std::iota(idx.begin(), idx.end(), 0);
  std::vector<char> recorded(b, 0);
  int64_t m = b;        // rows in the product
  int64_t running = b;  // rows not yet recorded
  int cur = 0;
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "adjoint", [&] {
    const std::vector<scalar_t*> consts{rows.full[3].data_ptr<scalar_t>(), rows.full[4].data_ptr<scalar_t>()};
    scalar_t* pv = rows.full[2].data_ptr<scalar_t>();
    const scalar_t* pd = rows.full[4].data_ptr<scalar_t>();
    for (int64_t t = 1; t <= max_iter && running > 0; ++t) {
      const int nxt = 1 - cur;
      const scalar_t* pw = rows.full[cur].data_ptr<scalar_t>();
      multiply(pv, pd, pw, m * n);
      at::addmm_out(rows(nxt, m), rows(3, m), rows(2, m), Ac);
      running = finish_rows<scalar_t>(rows.full[nxt].data_ptr<scalar_t>(), pw, consts, idx, m, n, t, max_iter, tol,
                                      rel, /*relu=*/false, compact, recorded, R.out.data_ptr<scalar_t>(),
                                      R.res.data_ptr<scalar_t>(), R.its.data_ptr<int64_t>(),
                                      R.conv.data_ptr<bool>());
      if (compact) m = running;
      cur = nxt;
    }
  });
  return R.list();
}

// Euclidean projection of each row onto the L1 ball of radius kappa (Duchi et al. 2008, sort and threshold), in
// place; rows already inside are left untouched (bit for bit), rows with a non-finite entry become NaN.
template <typename T>
void project_rows(T* p, int64_t rows, int64_t n, double kappa) {
  std::vector<T> u(n);
  const T kap = static_cast<T>(kappa);
  for (int64_t r = 0; r < rows; ++r) {
    T* row = p + r * n;
    T s = 0;
    for (int64_t k = 0; k < n; ++k) s += std::abs(row[k]);
    if (s <= kap) continue;
    if (!std::isfinite(s)) {
      std::fill(row, row + n, std::numeric_limits<T>::quiet_NaN());
      continue;
    }
    for (int64_t k = 0; k < n; ++k) u[k] = std::abs(row[k]);
    std::sort(u.begin(), u.end(), [](T a, T b) { return a > b; });
    // rho = the number of sorted entries that stay positive: j u_j - css_j > -kappa (true for a prefix of j)
    T css = 0, css_rho = 0;
    int64_t rho = 0;
    for (int64_t j = 0; j < n; ++j) {
      css += u[j];
      if (static_cast<T>(j + 1) * u[j] - css > -kap) {
        rho = j + 1;
        css_rho = css;
      }
    }
    const T theta = (css_rho - kap) / static_cast<T>(rho);
    for (int64_t k = 0; k < n; ++k) {
      const T a = std::abs(row[k]) - theta;
      row[k] = std::copysign(a > T(0) ? a : T(0), row[k]);
    }
  }
}

torch::Tensor project_rows_l1(torch::Tensor A, double kappa) {
  TORCH_CHECK(A.device().is_cpu() && A.dim() == 2, "project_rows_l1: a 2-d CPU tensor, got ", A.sizes());
  TORCH_CHECK(kappa > 0, "project_rows_l1: kappa must be positive");
  auto out = A.contiguous().clone();
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "project_rows_l1",
                             [&] { project_rows<scalar_t>(out.data_ptr<scalar_t>(), out.size(0), out.size(1), kappa); });
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("picard", &picard, "Per-sample Picard iteration x <- relu(BU + x A^T) (batch-first)");
  m.def("adjoint", &adjoint, "Per-sample adjoint iteration w <- g + (d * w) A (batch-first)");
  m.def("project_rows_l1", &project_rows_l1, "Rows of A onto the L1 ball of radius kappa (Duchi et al.)");
}
