// ASH's eager fast path as one C++ operator, ashlib_eager::ash: the per-call work that
// ashlib.ops.ash_family._EagerASH does in Python (reading the parameters, allocating the output
// and the statistics, saving for backward, the backward's parameter gradients) done in C++
// around the same C kernels (ash_cpu.c, passed in by address once with set_kernels, so that both
// routes run the very same compiled code).
//
// It takes only the common case: a contiguous CPU float32 or bfloat16 x whose statistics run
// over its trailing dims (rows = the leading `keep` dims), or a dense one (channels_last) with
// per-sample statistics, one-element z, alpha (and slope for
// Leaky ASH) with valid values, and every sample inside the kernels' range. Anything else throws
// NotImplementedError whose message starts with "ashlib_eager: fallback", before any output or
// graph exists, and the Python caller runs its own route (which raises the proper error for
// bad arguments, or takes the exact float64 path). The Python side also keeps every mode
// check (compile, functorch, dispatch modes, profiler, saved-tensor hooks): this operator is
// only ever called in plain eager mode.
//
// Results are bit-identical to the Python route: the same kernels, the same row chunks per
// thread, the parameter totals added in the same order.
//
// A backward with create_graph=True calls the Python operator ashlib::ash_grads_graph, which
// differentiates the float64 reference formulas (ashlib.ops.ash_family.differentiable_grads).
//
// The same file gives the graph operators ashlib::ash and ashlib::ash_backward their CPU
// kernels (graph_ash, graph_ash_backward below), and ashlib::ash its CPU autograd formula
// (GraphASH): what a torch.compile graph calls, and any call of torch.ops.ashlib.ash on CPU
// tensors. The kernels run the native fast path of the Python kernels
// (ash_family._ash_op, _ash_backward_op) without their Python layers, which cost far more than
// their few microseconds right after a kernel that has streamed a large tensor through the
// caches; every other case goes to those Python kernels, unchanged, through
// ashlib_eager::ash_python and ashlib_eager::ash_backward_python.

#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/SmallVector.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/profiler/orchestration/observer.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace ashlib_eager {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using at::Tensor;

typedef int (*fwd_fn)(int64_t, int64_t, const void *, void *, double, double, double, float, float, double *,
                      double *);
typedef int (*bwd_fn)(int64_t, int64_t, const void *, const void *, void *, const double *, const double *, double,
                      float, float, int, double *);

typedef void *(*pool_get_fn)(size_t, size_t *);
typedef void (*pool_put_fn)(void *, size_t);

struct Kernels {
  fwd_fn fwd_f32 = nullptr, fwd_bf16 = nullptr;
  bwd_fn bwd_f32 = nullptr, bwd_bf16 = nullptr;
  pool_get_fn pool_get = nullptr;  // the block cache of pool.c (null: off)
  pool_put_fn pool_put = nullptr;
  int64_t pool_min = 1 << 17;      // blocks.MIN_BYTES (set_kernels passes it)
  double ratio = 8.0;            // _CANCELLATION_RATIO
  double eps_min = 0.0;          // _EPS_FAST_MIN
  int64_t parallel_min = 1 << 19;  // native.PARALLEL_MIN_ELEMENTS
};
Kernels K;  // set once by set_kernels, before the first call of ash

[[noreturn]] void fallback(const char *why) {
  TORCH_CHECK_NOT_IMPLEMENTED(false, "ashlib_eager: fallback (", why, ")");
}

// native.row_chunks: how many row ranges the work is split into
int64_t row_chunks(int64_t rows, int64_t n) {
  int64_t threads = std::min<int64_t>(at::get_num_threads(), rows);
  return (threads <= 1 || rows * n < K.parallel_min) ? 1 : threads;
}

// call(r0, r1, chunk) over the row ranges of native.parallel_rows (the same bounds)
template <typename F>
void over_chunks(int64_t rows, int64_t chunks, const F &call) {
  if (chunks == 1) {
    call(0, rows, 0);
    return;
  }
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) call(rows * c / chunks, rows * (c + 1) / chunks, c);
  });
}

// An uninitialised tensor with x's sizes, strides and options (x is dense), its memory from the
// block cache of pool.c when it is large (see ashlib/ops/native/blocks.py), else from at::empty_like.
Tensor output_like(const Tensor &x) {
  const int64_t nbytes = x.numel() * static_cast<int64_t>(x.element_size());
  if (K.pool_get && nbytes >= K.pool_min) {
    size_t size = 0;
    if (void *p = K.pool_get(static_cast<size_t>(nbytes), &size)) {
      pool_put_fn put = K.pool_put;
      return at::from_blob(p, x.sizes(), x.strides(), [put, size](void *q) { put(q, size); }, x.options());
    }
  }
  return at::empty_like(x);
}

// a one-element CPU parameter as a double, or false (the Python route then raises the error)
bool try_param(const Tensor &t, bool positive, double *out) {
  if (!t.defined() || t.numel() != 1 || !t.device().is_cpu() || !t.is_floating_point()) return false;
  const double v = t.item<double>();
  if (!std::isfinite(v) || (positive && !(v > 0))) return false;
  *out = v;
  return true;
}

// the same, or fall back
double read_param(const Tensor &t, bool positive) {
  double v = 0.0;
  if (!try_param(t, positive, &v)) fallback("parameter");
  return v;
}

// The native forward over `rows` rows of n elements of x (contiguous values) into y, each row's
// mu and sigma into mp[] and sp[]; false when a row fails the kernels' range check (y is then
// incomplete). A = 2 alpha and the slope as read (the kernels take them rounded to float).
bool native_forward(fwd_fn fn, const Tensor &x, const Tensor &y, int64_t rows, int64_t n, double eps, double zf,
                    double Ad, double lf, double *mp, double *sp) {
  const int64_t row = n * x.element_size(), chunks = row_chunks(rows, n);
  c10::SmallVector<int, 64> ok(chunks, 1);  // (on the stack: no allocation after the output's)
  const float A = static_cast<float>(Ad), ell = static_cast<float>(lf);
  const char *xp = static_cast<const char *>(x.const_data_ptr());
  char *yp = static_cast<char *>(y.data_ptr());
  over_chunks(rows, chunks, [&](int64_t r0, int64_t r1, int64_t c) {
    ok[c] = fn(r1 - r0, n, xp + r0 * row, yp + r0 * row, eps, zf, K.ratio, A, ell, mp + r0, sp + r0);
  });
  for (int v : ok)
    if (!v) return false;
  return true;
}

// The native backward over `rows` rows of n elements of x (contiguous values) and g (x's dtype
// and layout): dL/dx into gxp unless it is null, and the parameters' gradients filled in where
// asked for, dL/dz = -c A sum(sigma R1), dL/dalpha = 2c sum(R2), dL/dslope = sum(Rl)
// (ash_family's docstring), the per-chunk totals added in chunk order as the Python kernels add
// them. A = 2 alpha and the slope as read (the kernels take them rounded to float).
void native_backward(bwd_fn fn, const Tensor &x, const Tensor &g, char *gxp, int64_t rows, int64_t n, const double *mp,
                     const double *sp, double zf, double Ad, double lf, bool leaky, bool need_l, Tensor *gz,
                     Tensor *ga, Tensor *gl) {
  const int64_t row = n * x.element_size(), chunks = row_chunks(rows, n);
  c10::SmallVector<double, 192> tot(3 * chunks, 0.0);  // (on the stack, as in native_forward)
  c10::SmallVector<int, 64> code(chunks, 0);
  const float A = static_cast<float>(Ad), ell = static_cast<float>(lf);
  const char *xp = static_cast<const char *>(x.const_data_ptr());
  const char *gp = static_cast<const char *>(g.const_data_ptr());
  over_chunks(rows, chunks, [&](int64_t r0, int64_t r1, int64_t c) {
    code[c] = fn(r1 - r0, n, xp + r0 * row, gp + r0 * row, gxp ? gxp + r0 * row : nullptr, mp + r0, sp + r0, zf, A,
                 ell, need_l ? 1 : 0, &tot[3 * c]);
  });
  for (int v : code)
    if (v) throw std::bad_alloc();
  double s_r1 = 0.0, s_r2 = 0.0, s_rl = 0.0;
  for (int64_t c = 0; c < chunks; ++c) {
    s_r1 += tot[3 * c];
    s_r2 += tot[3 * c + 1];
    s_rl += tot[3 * c + 2];
  }
  const double cc = leaky ? 1.0 - lf : 1.0;
  if (gz) gz->fill_(-s_r1 * (cc * Ad));
  if (ga) ga->fill_(s_r2 * (2.0 * cc));
  if (gl && need_l) gl->fill_(s_rl);
}

// A backward with create_graph=True: the differentiable reference in Python (statistics over
// x's dims from `keep` on), the gradients asked for in `needs`
std::vector<Tensor> grads_graph(const Tensor &grad, const Tensor &x, const Tensor &z, const Tensor &alpha,
                                const std::optional<Tensor> &slope, double eps, int64_t keep, bool needs[4]) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("ashlib_eager::ash_grads_graph", "")
                       .typed<std::vector<Tensor>(const Tensor &, const Tensor &, const Tensor &, const Tensor &,
                                                  const std::optional<Tensor> &, double, int64_t,
                                                  c10::ArrayRef<bool>)>();
  return op.call(grad, x, z, alpha, slope, eps, keep, c10::ArrayRef<bool>(needs, 4));
}

struct ASHFunction : public torch::autograd::Function<ASHFunction> {
  static Tensor forward(AutogradContext *ctx, const Tensor &x, const Tensor &z, const Tensor &alpha,
                        const std::optional<Tensor> &slope, double eps, int64_t keep) {
    const bool f32 = x.scalar_type() == at::kFloat;
    if (!x.device().is_cpu() || x.layout() != at::kStrided || !(f32 || x.scalar_type() == at::kBFloat16) ||
        x.is_neg() || x.is_conj() || x._is_zerotensor())
      fallback("input");
    if (!(eps >= K.eps_min) || !std::isfinite(eps)) fallback("eps");
    if (keep < 0 || keep >= x.dim()) fallback("dims");
    int64_t rows = 1, n = 1;
    for (int64_t d = 0; d < x.dim(); ++d) (d < keep ? rows : n) *= x.size(d);
    if (rows == 0 || n == 0) fallback("empty");
    // the rows are the memory of x taken n elements at a time: x contiguous, or (per-sample
    // statistics) any dense layout whose samples are contiguous blocks, such as channels_last;
    // the output and the gradient get x's strides, so that every element keeps its place
    if (!x.is_contiguous() && !(keep == 1 && x.stride(0) == n && x.is_non_overlapping_and_dense()))
      fallback("layout");
    const double zf = read_param(z, false), af = read_param(alpha, true);
    const bool leaky = slope.has_value() && slope->defined();
    const double lf = leaky ? read_param(*slope, true) : 0.0;
    fwd_fn fn = f32 ? K.fwd_f32 : K.fwd_bf16;
    if (!fn) fallback("kernels");
    // every small allocation before the output (the statistics, the context's entries): small
    // blocks placed after a large one keep glibc from reusing the large one's space, and the
    // large blocks are then page-faulted in again on every call
    ctx->saved_data["zf"] = zf;
    ctx->saved_data["A"] = 2.0 * af;  // as read: the kernels take them rounded to float,
    ctx->saved_data["ell"] = lf;      // the parameters' gradients use them as they are
    ctx->saved_data["leaky"] = leaky;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["keep"] = keep;
    Tensor stats = at::empty({2, rows, 1}, x.options().dtype(at::kDouble));
    Tensor y = output_like(x);  // x's strides (x is dense)
    double *mp = stats.data_ptr<double>();
    if (!native_forward(fn, x, y, rows, n, eps, zf, 2.0 * af, lf, mp, mp + rows)) fallback("range");
    ctx->save_for_backward({x, stats, z, alpha, leaky ? *slope : Tensor()});
    return y;
  }

  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &stats = saved[1], &z = saved[2], &alpha = saved[3], &slope = saved[4];
    const bool leaky = ctx->saved_data["leaky"].toBool();
    const bool need_x = ctx->needs_input_grad(0), need_z = ctx->needs_input_grad(1),
               need_a = ctx->needs_input_grad(2), need_l = leaky && ctx->needs_input_grad(3);
    Tensor grad = grads[0];
    variable_list out(6);
    if (at::GradMode::is_enabled()) {  // create_graph=True: a differentiable backward, in Python
      bool needs[4] = {need_x, need_z, need_a, need_l};
      std::optional<Tensor> sl = leaky ? std::optional<Tensor>(slope) : std::nullopt;
      auto g = grads_graph(grad, x, z, alpha, sl, ctx->saved_data["eps"].toDouble(), ctx->saved_data["keep"].toInt(),
                           needs);
      for (int i = 0; i < 4; ++i)
        if (needs[i]) out[i] = g[i];
      return out;
    }
    // values in memory: a negative view resolved, a zero tensor (no memory) made real
    if (grad._is_zerotensor()) grad = at::zeros(grad.sizes(), grad.options());
    grad = grad.resolve_neg();
    const int64_t keep = ctx->saved_data["keep"].toInt();
    int64_t rows = 1, n = 1;
    for (int64_t d = 0; d < x.dim(); ++d) (d < keep ? rows : n) *= x.size(d);
    const double zf = ctx->saved_data["zf"].toDouble();
    const double Ad = ctx->saved_data["A"].toDouble(), lf = ctx->saved_data["ell"].toDouble();
    const bool f32 = x.scalar_type() == at::kFloat;
    bwd_fn fn = f32 ? K.bwd_f32 : K.bwd_bf16;
    // the small blocks before dL/dx (see the forward)
    Tensor gz = need_z ? at::empty(z.sizes(), z.options()) : Tensor();
    Tensor ga = need_a ? at::empty(alpha.sizes(), alpha.options()) : Tensor();
    Tensor gl = need_l ? at::empty(slope.sizes(), slope.options()) : Tensor();
    // the gradient in x's dtype and strides (a copy unless it has them: an expanded or
    // differently laid out gradient)
    const bool same_layout = x.is_contiguous() ? grad.is_contiguous() : grad.strides() == x.strides();
    Tensor g2 = grad.scalar_type() == x.scalar_type() && same_layout ? grad : at::empty_like(x).copy_(grad);
    Tensor gx = need_x ? output_like(x) : Tensor();
    const double *mp = stats.const_data_ptr<double>(), *sp = mp + rows;
    native_backward(fn, x, g2, need_x ? static_cast<char *>(gx.data_ptr()) : nullptr, rows, n, mp, sp, zf, Ad, lf,
                    leaky, need_l, need_z ? &gz : nullptr, need_a ? &ga : nullptr, need_l ? &gl : nullptr);
    out[0] = gx;
    out[1] = gz;
    out[2] = ga;
    out[3] = gl;
    return out;
  }
};

// --- the CPU kernels of the graph operators ashlib::ash and ashlib::ash_backward ---------------

using Quad = std::tuple<Tensor, Tensor, Tensor, Tensor>;

// whether the C kernels take x (2-D rows, CPU float32/bfloat16 values in memory, not empty), with
// this backend and eps; under the profiler the Python kernels run, whose outputs come from
// torch's allocator, so that the profiler's memory events count them
bool graph_fast(const Tensor &x, const std::optional<c10::string_view> &backend, double eps) {
  if (backend.has_value() && *backend != "native") return false;
  const bool f32 = x.scalar_type() == at::kFloat;
  if (!(f32 ? K.fwd_f32 : K.fwd_bf16) || !(f32 || x.scalar_type() == at::kBFloat16)) return false;
  if (x.dim() != 2 || !x.device().is_cpu() || x.layout() != at::kStrided || x.is_neg() || x.is_conj() ||
      x._is_zerotensor() || x.size(0) == 0 || x.size(1) == 0)
    return false;
  if (!(eps >= K.eps_min) || !std::isfinite(eps)) return false;
  return !torch::profiler::impl::profilerEnabled();
}

Quad graph_ash(const Tensor &x_in, const Tensor &z, const Tensor &alpha, const std::optional<Tensor> &slope,
               double eps, std::optional<c10::string_view> backend, int64_t chunk_elements) {
  static auto python = c10::Dispatcher::singleton()
                           .findSchemaOrThrow("ashlib_eager::ash_python", "")
                           .typed<Quad(const Tensor &, const Tensor &, const Tensor &, const std::optional<Tensor> &,
                                       double, std::optional<c10::string_view>, int64_t)>();
  auto slow = [&]() {
    at::AutoDispatchBelowADInplaceOrView below;
    return python.call(x_in, z, alpha, slope, eps, backend, chunk_elements);
  };
  double zf = 0.0, af = 0.0, lf = 0.0;
  const bool leaky = slope.has_value() && slope->defined();
  if (!graph_fast(x_in, backend, eps) || !try_param(z, false, &zf) || !try_param(alpha, true, &af) ||
      (leaky && !try_param(*slope, true, &lf)))
    return slow();
  const Tensor x = x_in.contiguous();
  const int64_t rows = x.size(0), n = x.size(1);
  const bool f32 = x.scalar_type() == at::kFloat;
  fwd_fn fn = f32 ? K.fwd_f32 : K.fwd_bf16;
  // the small blocks before the large one (see ASHFunction::forward)
  Tensor mu = at::empty({rows, 1}, x.options().dtype(at::kDouble));
  Tensor sigma = at::empty({rows, 1}, x.options().dtype(at::kDouble));
  Tensor exact = at::scalar_tensor(false, at::TensorOptions().dtype(at::kBool));
  Tensor y = output_like(x);
  if (!native_forward(fn, x, y, rows, n, eps, zf, 2.0 * af, lf, mu.data_ptr<double>(), sigma.data_ptr<double>()))
    return slow();  // a sample outside the kernels' range: the exact path
  return Quad(y, mu, sigma, exact);
}

Quad graph_ash_backward(const Tensor &grad_in, const Tensor &x_in, const Tensor &z, const Tensor &alpha,
                        const std::optional<Tensor> &slope, const Tensor &mu_in, const Tensor &sigma_in,
                        const Tensor &exact, double eps, const c10::List<bool> &need,
                        std::optional<c10::string_view> backend, int64_t chunk_elements) {
  static auto python =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("ashlib_eager::ash_backward_python", "")
          .typed<Quad(const Tensor &, const Tensor &, const Tensor &, const Tensor &, const std::optional<Tensor> &,
                      const Tensor &, const Tensor &, const Tensor &, double, const c10::List<bool> &,
                      std::optional<c10::string_view>, int64_t)>();
  auto slow = [&]() {
    at::AutoDispatchBelowADInplaceOrView below;
    return python.call(grad_in, x_in, z, alpha, slope, mu_in, sigma_in, exact, eps, need, backend, chunk_elements);
  };
  double zf = 0.0, af = 0.0, lf = 0.0;
  const bool leaky = slope.has_value() && slope->defined();
  // (the forward that took the exact path wants the exact backward; eps is not read here)
  if (need.size() != 4 || !graph_fast(x_in, backend, K.eps_min) || !exact.device().is_cpu() ||
      exact.numel() != 1 || exact.item<bool>() || !try_param(z, false, &zf) || !try_param(alpha, true, &af) ||
      (leaky && !try_param(*slope, true, &lf)))
    return slow();
  const Tensor x = x_in.contiguous();
  const int64_t rows = x.size(0), n = x.size(1);
  if (mu_in.scalar_type() != at::kDouble || sigma_in.scalar_type() != at::kDouble || mu_in.numel() != rows ||
      sigma_in.numel() != rows || !mu_in.device().is_cpu() || !sigma_in.device().is_cpu() ||
      grad_in.sizes() != x.sizes() || !grad_in.device().is_cpu() || grad_in.layout() != at::kStrided)
    return slow();
  const Tensor mu = mu_in.contiguous(), sigma = sigma_in.contiguous();
  const bool need_x = need.get(0), need_z = need.get(1), need_a = need.get(2), need_l = need.get(3) && leaky;
  const bool f32 = x.scalar_type() == at::kFloat;
  bwd_fn fn = f32 ? K.bwd_f32 : K.bwd_bf16;
  if (!fn) return slow();
  // values in memory (a negative view resolved, a zero tensor made real), in x's dtype, contiguous
  Tensor grad = grad_in._is_zerotensor() ? at::zeros(grad_in.sizes(), grad_in.options()) : grad_in.resolve_neg();
  // the small blocks before dL/dx (see ASHFunction::forward)
  Tensor gz = at::empty(z.sizes(), z.options()), ga = at::empty(alpha.sizes(), alpha.options());
  Tensor gl = leaky ? at::empty(slope->sizes(), slope->options()) : at::empty({0}, x.options());
  if (grad.scalar_type() != x.scalar_type() || !grad.is_contiguous()) grad = grad.to(x.scalar_type()).contiguous();
  Tensor gx = need_x ? output_like(x) : at::empty_like(x);
  native_backward(fn, x, grad, need_x ? static_cast<char *>(gx.data_ptr()) : nullptr, rows, n,
                  mu.const_data_ptr<double>(), sigma.const_data_ptr<double>(), zf, 2.0 * af, lf, leaky, need_l,
                  need_z ? &gz : nullptr, need_a ? &ga : nullptr, need_l ? &gl : nullptr);
  return Quad(gx, gz, ga, gl);
}

// The autograd kernel of ashlib::ash on CPU tensors (AutogradCPU, which takes precedence over the
// formula ash_family registers in Python for every device): the same saved tensors and the same
// backward (ashlib::ash_backward, or under create_graph=True the differentiable reference through
// ashlib_eager::ash_grads_graph) without the Python layers around each call. Compiled graphs are
// traced through it like through the Python formula (its forward and backward are operators).
struct GraphASH : public torch::autograd::Function<GraphASH> {
  static variable_list forward(AutogradContext *ctx, const Tensor &x, const Tensor &z, const Tensor &alpha,
                               const std::optional<Tensor> &slope, double eps,
                               std::optional<c10::string_view> backend, int64_t chunk_elements) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("ashlib::ash", "")
                         .typed<Quad(const Tensor &, const Tensor &, const Tensor &, const std::optional<Tensor> &,
                                     double, std::optional<c10::string_view>, int64_t)>();
    Quad out;
    {
      at::AutoDispatchBelowADInplaceOrView below;
      out = op.call(x, z, alpha, slope, eps, backend, chunk_elements);
    }
    const Tensor &mu = std::get<1>(out), &sigma = std::get<2>(out), &exact = std::get<3>(out);
    ctx->save_for_backward({x, z, alpha, slope.has_value() ? *slope : Tensor(), mu, sigma, exact});
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["has_backend"] = backend.has_value();
    ctx->saved_data["backend"] = std::string(backend.has_value() ? *backend : c10::string_view());
    ctx->saved_data["chunk_elements"] = chunk_elements;
    ctx->mark_non_differentiable({mu, sigma, exact});
    return {std::get<0>(out), mu, sigma, exact};
  }

  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &z = saved[1], &alpha = saved[2], &slope = saved[3], &mu = saved[4],
                 &sigma = saved[5], &exact = saved[6];
    const bool has_slope = slope.defined();
    bool needs[4] = {ctx->needs_input_grad(0), ctx->needs_input_grad(1), ctx->needs_input_grad(2),
                     has_slope && ctx->needs_input_grad(3)};
    std::optional<Tensor> sl = has_slope ? std::optional<Tensor>(slope) : std::nullopt;
    const double eps = ctx->saved_data["eps"].toDouble();
    variable_list out(7);
    Tensor grad = grads[0];
    if (!grad.defined()) grad = at::zeros_like(x);  // (y unused: only mu or sigma reached the loss)
    std::vector<Tensor> g;
    if (at::GradMode::is_enabled()) {  // create_graph=True: the differentiable reference, statistics over dim 1
      g = grads_graph(grad, x, z, alpha, sl, eps, 1, needs);
    } else {
      static auto op =
          c10::Dispatcher::singleton()
              .findSchemaOrThrow("ashlib::ash_backward", "")
              .typed<Quad(const Tensor &, const Tensor &, const Tensor &, const Tensor &,
                          const std::optional<Tensor> &, const Tensor &, const Tensor &, const Tensor &, double,
                          const c10::List<bool> &, std::optional<c10::string_view>, int64_t)>();
      const std::string backend = ctx->saved_data["backend"].toStringRef();
      std::optional<c10::string_view> be =
          ctx->saved_data["has_backend"].toBool() ? std::optional<c10::string_view>(backend) : std::nullopt;
      Quad r = op.call(grad, x, z, alpha, sl, mu, sigma, exact, eps, c10::List<bool>({needs[0], needs[1], needs[2],
                       needs[3]}), be, ctx->saved_data["chunk_elements"].toInt());
      g = {std::get<0>(r), std::get<1>(r), std::get<2>(r), std::get<3>(r)};
    }
    for (int i = 0; i < 4; ++i)
      if (needs[i]) out[i] = g[i];
    return out;
  }
};

Quad graph_ash_autograd(const Tensor &x, const Tensor &z, const Tensor &alpha, const std::optional<Tensor> &slope,
                        double eps, std::optional<c10::string_view> backend, int64_t chunk_elements) {
  auto v = GraphASH::apply(x, z, alpha, slope, eps, backend, chunk_elements);
  return Quad(v[0], v[1], v[2], v[3]);
}

Tensor ash(const Tensor &x, const Tensor &z, const Tensor &alpha, const std::optional<Tensor> &slope, double eps,
           int64_t keep) {
  return ASHFunction::apply(x, z, alpha, slope, eps, keep);
}

void set_kernels(c10::ArrayRef<int64_t> addresses, double ratio, double eps_min, int64_t parallel_min) {
  TORCH_CHECK(addresses.size() == 4 || addresses.size() == 7,
              "set_kernels takes 4 addresses, or 7: and the block cache's get, put and smallest size");
  K.fwd_f32 = reinterpret_cast<fwd_fn>(addresses[0]);
  K.fwd_bf16 = reinterpret_cast<fwd_fn>(addresses[1]);
  K.bwd_f32 = reinterpret_cast<bwd_fn>(addresses[2]);
  K.bwd_bf16 = reinterpret_cast<bwd_fn>(addresses[3]);
  K.pool_get = addresses.size() == 7 ? reinterpret_cast<pool_get_fn>(addresses[4]) : nullptr;
  K.pool_put = addresses.size() == 7 ? reinterpret_cast<pool_put_fn>(addresses[5]) : nullptr;
  if (addresses.size() == 7) K.pool_min = addresses[6];
  K.ratio = ratio;
  K.eps_min = eps_min;
  K.parallel_min = parallel_min;
}

}  // namespace ashlib_eager

TORCH_LIBRARY(ashlib_eager, m) {
  m.def("ash(Tensor x, Tensor z, Tensor alpha, Tensor? slope, float eps, int keep) -> Tensor");
  m.def("set_kernels(int[] addresses, float ratio, float eps_min, int parallel_min) -> ()", TORCH_FN(ashlib_eager::set_kernels));
  m.impl("ash", c10::DispatchKey::CompositeImplicitAutograd, TORCH_FN(ashlib_eager::ash));
}

// ashlib::ash and ashlib::ash_backward are defined in Python (ashlib/ops/ash_family.py), which
// also defines ashlib_eager::ash_python and ash_backward_python before this library is loaded
TORCH_LIBRARY_IMPL(ashlib, CPU, m) {
  m.impl("ash", TORCH_FN(ashlib_eager::graph_ash));
  m.impl("ash_backward", TORCH_FN(ashlib_eager::graph_ash_backward));
}
TORCH_LIBRARY_IMPL(ashlib, AutogradCPU, m) { m.impl("ash", TORCH_FN(ashlib_eager::graph_ash_autograd)); }
