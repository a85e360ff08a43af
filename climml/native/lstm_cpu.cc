// LSTM recurrence on CPU as two XLA FFI custom calls: the forward over all time steps and the
// step-by-step backward (backpropagation through time). climml/native/build.py compiles this file
// on first use; climml/models/_recurrence.py calls it for float32 LSTM layers on CPU.
//
// Why a kernel: XLA:CPU runs a lax.scan body one small op (thunk) at a time on one core, so at
// batch 64 x 64 units a step costs ~20 us of which the recurrent matmul is ~10 us. Here a step is
// one pass per 4-row tile: the matmul accumulates into registers, the gate arithmetic runs on the
// registers, and the rows of the batch are split between threads, which never need to meet inside
// the loop (rows of an LSTM batch are independent). Both directions of a bidirectional layer and
// the weight gradients stay in XLA (batched matmuls outside the loop).
//
// Layouts (row-major, time-major, gate blocks i, f, g, o as in PyTorch):
//   xw    (T, B, 4H)  input projection plus both biases
//   w     (H, 4H)     recurrent kernel;  wt (4H, H) its transpose
//   valid (T, B)      uint8, 0 at padded steps (the state is carried, the output is zero)
//   hs, cs (T, B, H)  state after each step;  acts (T, B, 4H) gate activations
//   dz    (T, B, 4H)  cotangent of the pre-activations (of xw, and of h @ w)
// H must be a multiple of 16 (one 16-float vector); the Python side checks.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <cstdlib>
#include <memory>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// ---------------------------------------------------------------------------------------------
// 16-float vectors (GCC vector extensions: AVX-512 registers where the CPU has them, pairs of
// AVX registers otherwise).

typedef float vec __attribute__((vector_size(64)));
constexpr int kLanes = 16;

inline vec load(const float* p) {
  vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void store(float* p, vec v) { std::memcpy(p, &v, sizeof v); }

inline vec splat(float x) { return vec{} + x; }

// tanh as Eigen's (and XLA:CPU's) rational approximation: odd degree-13 over even degree-6
// polynomial on [-7.9988, 7.9988], where float tanh saturates; error ~1 ulp.
inline vec tanh_v(vec x) {
  const float bound = 7.99881172180175781f;
  x = x > bound ? splat(bound) : x;
  x = x < -bound ? splat(-bound) : x;
  const vec x2 = x * x;
  vec p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  p = p * x;
  vec q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return p / q;
}

// sigmoid(x) = tanh(x / 2) / 2 + 1 / 2, the same identity the XLA path uses.
inline vec sigmoid_v(vec x) { return tanh_v(x * 0.5f) * 0.5f + 0.5f; }

// ---------------------------------------------------------------------------------------------
// Fork-join on XLA's own intra-op thread pool. A private pool was tried first: its threads fought
// XLA's (which spin for a while after each parallel op) for the same cores and every call got
// 3x slower. Parts are claimed from a counter by the caller and by the scheduled tasks alike, so
// the call finishes even when no pool thread is free (the caller then runs every part itself),
// and the shared state lives as long as the last task that holds it.

struct ForkJoin {
  std::function<void(int)> fn;
  int parts;
  std::atomic<int> next{0};
  std::atomic<int> done{0};

  void drain() {
    for (int p; (p = next.fetch_add(1, std::memory_order_relaxed)) < parts;) {
      fn(p);
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

// Largest number of parts to split a call into: XLA's pool size, capped by CLIMML_NATIVE_THREADS.
int max_parts(ffi::ThreadPool& pool) {
  int threads = static_cast<int>(std::max<int64_t>(1, pool.num_threads()));
  if (const char* env = std::getenv("CLIMML_NATIVE_THREADS"))
    threads = std::max(1, std::min(threads, std::atoi(env)));
  return threads;
}

void parallel_for(ffi::ThreadPool& pool, int parts, std::function<void(int)> fn) {
  auto job = std::make_shared<ForkJoin>();
  job->fn = std::move(fn);
  job->parts = parts;
  for (int p = 1; p < parts; ++p) pool.Schedule([job] { job->drain(); });
  job->drain();
  while (job->done.load(std::memory_order_acquire) != parts) __builtin_ia32_pause();
}

// Splits `rows` into at most `parts` contiguous ranges of whole 4-row tiles.
struct RowSplit {
  int parts, per_part;
  RowSplit(int rows, int max_parts) {
    const int tiles = (rows + 3) / 4;
    parts = std::max(1, std::min(max_parts, tiles));
    per_part = (tiles + parts - 1) / parts * 4;
    parts = (rows + per_part - 1) / per_part;
  }
  int begin(int p) const { return p * per_part; }
  int end(int p, int rows) const { return std::min(rows, (p + 1) * per_part); }
};

// ---------------------------------------------------------------------------------------------
// Forward: R rows x 16 units x 4 gates per tile.

template <int R>
void forward_tile(const float* xw, const float* h_prev, const float* c_prev, const float* w,
                  const uint8_t* valid, float* h, float* c, float* acts, int H, int u) {
  const int G = 4 * H;
  vec acc[R][4];
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < 4; ++q) acc[r][q] = load(xw + r * G + q * H + u);
  if (h_prev != nullptr) {
    for (int k = 0; k < H; ++k) {
      const float* wk = w + k * G + u;
      const vec w0 = load(wk), w1 = load(wk + H), w2 = load(wk + 2 * H), w3 = load(wk + 3 * H);
      for (int r = 0; r < R; ++r) {
        const float a = h_prev[r * H + k];
        acc[r][0] += a * w0;
        acc[r][1] += a * w1;
        acc[r][2] += a * w2;
        acc[r][3] += a * w3;
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    const vec cp = c_prev ? load(c_prev + r * H + u) : vec{};
    float* act = acts + r * G + u;
    if (!valid[r]) {  // padded step: carry the state, gates unused by the backward pass
      store(c + r * H + u, cp);
      store(h + r * H + u, h_prev ? load(h_prev + r * H + u) : vec{});
      for (int q = 0; q < 4; ++q) store(act + q * H, vec{});
      continue;
    }
    const vec i = sigmoid_v(acc[r][0]), f = sigmoid_v(acc[r][1]);
    const vec g = tanh_v(acc[r][2]), o = sigmoid_v(acc[r][3]);
    const vec cn = f * cp + i * g;
    store(act, i);
    store(act + H, f);
    store(act + 2 * H, g);
    store(act + 3 * H, o);
    store(c + r * H + u, cn);
    store(h + r * H + u, o * tanh_v(cn));
  }
}

template <int R>
void forward_rows(int row, int T, int B, int H, const float* xw, const float* w,
                  const uint8_t* valid, float* hs, float* cs, float* acts) {
  const int G = 4 * H;
  for (int t = 0; t < T; ++t) {
    const size_t s = static_cast<size_t>(t) * B + row;
    const float* h_prev = t ? hs + (s - B) * H : nullptr;
    const float* c_prev = t ? cs + (s - B) * H : nullptr;
    for (int u = 0; u < H; u += kLanes)
      forward_tile<R>(xw + s * G, h_prev, c_prev, w, valid + s, hs + s * H, cs + s * H,
                      acts + s * G, H, u);
  }
}

// A row range: 4-row tiles, then 1-row tiles for the remainder. Each tile runs all T steps
// before the next tile starts, so its state stays in cache; rows never read other rows.
void forward_range(int lo, int hi, int T, int B, int H, const float* xw, const float* w,
                   const uint8_t* valid, float* hs, float* cs, float* acts) {
  int row = lo;
  for (; row + 4 <= hi; row += 4) forward_rows<4>(row, T, B, H, xw, w, valid, hs, cs, acts);
  for (; row < hi; ++row) forward_rows<1>(row, T, B, H, xw, w, valid, hs, cs, acts);
}

// ---------------------------------------------------------------------------------------------
// Backward. Per step and row tile: gate cotangents from the kept activations (elementwise), then
// the state cotangent entering the step, dh_prev = dz @ w.T (R rows x H outputs, k over 4H).

template <int R>
void gate_cotangents(int H, const float* act, const float* c, const float* c_prev,
                     const uint8_t* valid, const float* d_out, float* dh, float* dc, float* dz) {
  const int G = 4 * H;
  for (int r = 0; r < R; ++r) {
    float* dzr = dz + r * G;
    if (!valid[r]) {  // the state passed through: dh, dc unchanged, no gate cotangent
      std::memset(dzr, 0, sizeof(float) * G);
      continue;
    }
    for (int u = 0; u < H; u += kLanes) {
      const float* a = act + r * G + u;
      const vec i = load(a), f = load(a + H), g = load(a + 2 * H), o = load(a + 3 * H);
      const vec cn = load(c + r * H + u);
      const vec cp = c_prev ? load(c_prev + r * H + u) : vec{};
      vec dhv = load(dh + r * H + u);
      if (d_out) dhv += load(d_out + r * H + u);
      const vec th = tanh_v(cn);
      const vec dcv = load(dc + r * H + u) + dhv * o * (1.0f - th * th);
      store(dzr + u, dcv * g * i * (1.0f - i));
      store(dzr + H + u, dcv * cp * f * (1.0f - f));
      store(dzr + 2 * H + u, dcv * i * (1.0f - g * g));
      store(dzr + 3 * H + u, dhv * th * o * (1.0f - o));
      store(dc + r * H + u, dcv * f);
    }
  }
}

// dh[r, u:u+16*NV] = (valid ? 0 : dh + d_out) + dz[r] @ wt[:, u:u+16*NV]
template <int R, int NV>
void state_cotangent(int H, const float* dz, const float* wt, const uint8_t* valid,
                     const float* d_out, float* dh, int u) {
  const int G = 4 * H;
  vec acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < NV; ++j) {
      vec keep{};
      if (!valid[r]) {
        keep = load(dh + r * H + u + j * kLanes);
        if (d_out) keep += load(d_out + r * H + u + j * kLanes);
      }
      acc[r][j] = keep;
    }
  for (int k = 0; k < G; ++k) {
    vec wk[NV];
    for (int j = 0; j < NV; ++j) wk[j] = load(wt + k * H + u + j * kLanes);
    for (int r = 0; r < R; ++r) {
      const float a = dz[r * G + k];
      for (int j = 0; j < NV; ++j) acc[r][j] += a * wk[j];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < NV; ++j) store(dh + r * H + u + j * kLanes, acc[r][j]);
}

template <int R>
void backward_rows(int row, int T, int B, int H, const float* acts, const float* cs,
                   const float* wt, const uint8_t* valid, const float* d_hs, float* dh, float* dc,
                   float* dz) {
  const int G = 4 * H;
  for (int t = T - 1; t >= 0; --t) {
    const size_t s = static_cast<size_t>(t) * B + row;
    const float* d_out = d_hs ? d_hs + s * H : nullptr;
    const float* c_prev = t ? cs + (s - B) * H : nullptr;
    float* dh_r = dh + static_cast<size_t>(row) * H;
    gate_cotangents<R>(H, acts + s * G, cs + s * H, c_prev, valid + s, d_out, dh_r,
                       dc + static_cast<size_t>(row) * H, dz + s * G);
    if (t == 0) break;  // the initial state is a constant: its cotangent is not needed
    // The output at a padded step is zero, so its cotangent never reaches the state.
    int u = 0;
    for (; u + 4 * kLanes <= H; u += 4 * kLanes)
      state_cotangent<R, 4>(H, dz + s * G, wt, valid + s, nullptr, dh_r, u);
    for (; u < H; u += kLanes) state_cotangent<R, 1>(H, dz + s * G, wt, valid + s, nullptr, dh_r, u);
  }
}

void backward_range(int lo, int hi, int T, int B, int H, const float* acts, const float* cs,
                    const float* wt, const uint8_t* valid, const float* d_hs, float* dh, float* dc,
                    float* dz) {
  int row = lo;
  for (; row + 4 <= hi; row += 4)
    backward_rows<4>(row, T, B, H, acts, cs, wt, valid, d_hs, dh, dc, dz);
  for (; row < hi; ++row) backward_rows<1>(row, T, B, H, acts, cs, wt, valid, d_hs, dh, dc, dz);
}

ffi::Error check_hidden(int64_t H) {
  if (H <= 0 || H % kLanes != 0)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "hidden size must be a multiple of 16");
  return ffi::Error::Success();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// FFI handlers.

static ffi::Error LstmForwardImpl(ffi::Buffer<ffi::F32> xw, ffi::Buffer<ffi::F32> w,
                                  ffi::Buffer<ffi::U8> valid, ffi::ResultBuffer<ffi::F32> hs,
                                  ffi::ResultBuffer<ffi::F32> cs,
                                  ffi::ResultBuffer<ffi::F32> acts, ffi::ThreadPool pool) {
  const auto dims = xw.dimensions();
  const int T = dims[0], B = dims[1], H = w.dimensions()[0];
  if (auto e = check_hidden(H); e.failure()) return e;
  const RowSplit split(B, max_parts(pool));
  parallel_for(pool, split.parts, [&](int p) {
    forward_range(split.begin(p), split.end(p, B), T, B, H, xw.typed_data(), w.typed_data(),
                  valid.typed_data(), hs->typed_data(), cs->typed_data(), acts->typed_data());
  });
  return ffi::Error::Success();
}

// d_hs: (T, B, H) cotangent of the outputs, or empty when the outputs are unused; d_last: (B, H)
// cotangent of the final state, or empty.
static ffi::Error LstmBackwardImpl(ffi::Buffer<ffi::F32> acts, ffi::Buffer<ffi::F32> cs,
                                   ffi::Buffer<ffi::F32> wt, ffi::Buffer<ffi::U8> valid,
                                   ffi::Buffer<ffi::F32> d_hs, ffi::Buffer<ffi::F32> d_last,
                                   ffi::ResultBuffer<ffi::F32> dz, ffi::ThreadPool pool) {
  const auto dims = cs.dimensions();
  const int T = dims[0], B = dims[1], H = dims[2];
  if (auto e = check_hidden(H); e.failure()) return e;
  const size_t state = static_cast<size_t>(B) * H;
  std::vector<float> dh(state, 0.0f), dc(state, 0.0f);
  if (d_last.element_count() == state)
    std::memcpy(dh.data(), d_last.typed_data(), sizeof(float) * state);
  const float* d_out = d_hs.element_count() == state * T ? d_hs.typed_data() : nullptr;
  const RowSplit split(B, max_parts(pool));
  parallel_for(pool, split.parts, [&](int p) {
    backward_range(split.begin(p), split.end(p, B), T, B, H, acts.typed_data(), cs.typed_data(),
                   wt.typed_data(), valid.typed_data(), d_out, dh.data(), dc.data(),
                   dz->typed_data());
  });
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(ClimmlLstmForward, LstmForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::U8>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ctx<ffi::ThreadPool>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(ClimmlLstmBackward, LstmBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::U8>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ctx<ffi::ThreadPool>());
