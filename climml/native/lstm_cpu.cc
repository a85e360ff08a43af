// LSTM recurrence on CPU as two XLA FFI custom calls: the forward over all time steps and the
// step-by-step backward (backpropagation through time). climml/native/build.py compiles this file
// on first use; climml/models/_native_lstm.py calls it for float32 LSTM layers on CPU.
//
// Why a kernel: XLA:CPU runs a lax.scan body one small op (thunk) at a time on one core, so at
// batch 64 x 64 units a step costs ~20 us of which the recurrent matmul is ~10 us. Here a step is
// one pass per 4-row tile: the matmul accumulates into registers, the gate arithmetic runs on the
// registers, and the rows of the batch are split between threads, which never need to meet inside
// the loop (rows of an LSTM batch are independent). A bidirectional layer calls it once per
// direction (the reverse one on a flipped sequence); the weight gradients stay in XLA (one
// matmul over all the steps of a chunk). For long sequences the forward keeps only h and c, and
// the backward re-runs each chunk's forward from its initial state (h0, c0) to get its gates.
//
// Layouts (row-major, time-major, gate blocks i, f, g, o as in PyTorch):
//   x     (T, B, F)   inputs;  w_in (F, 4H) input kernel;  b (4H) both biases
//   w     (H, 4H)     recurrent kernel;  wt (4H, H) its transpose
//   valid (T, B)      uint8, 0 at padded steps (the state is carried, the output is zero)
//   hs, cs (T, B, H)  state after each step;  acts (T, B, 4H) gate activations
//   dz    (T, B, 4H)  cotangent of the pre-activations (of x @ w_in, and of h @ w)
// H must be a multiple of 16 (one 16-float vector); the Python side checks.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// ---------------------------------------------------------------------------------------------
// 16-float vectors (GCC vector extensions): one AVX-512 register each. The source also compiles
// for AVX2 (pairs of registers), where GCC moves much of the vector arithmetic through the stack
// (~20x slower than the XLA path), and for aarch64 (untested); build.py builds for AVX-512 only.

typedef float vec __attribute__((vector_size(64)));
constexpr int kLanes = 16;

inline vec load(const float* p) {
  vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void store(float* p, vec v) { std::memcpy(p, &v, sizeof v); }

inline vec splat(float x) { return vec{} + x; }

// Keeps loaded vectors in registers: without this GCC re-reads each one from memory as an FMA
// operand for every row of a tile, and the loads, not the FMAs, set the pace. An empty asm that
// claims to modify a register operand needs the value to fit one: a whole vector with AVX-512
// (zmm), each 8-float half with AVX2 (ymm). Elsewhere (SSE-only x86, aarch64: build.py does not
// build for them) it does nothing, which costs speed only.
#if defined(__AVX512F__)
inline void in_register(vec& v) { asm volatile("" : "+v"(v)); }
#elif defined(__AVX__)
typedef float half_vec __attribute__((vector_size(32)));

inline void in_register(vec& v) {
  half_vec lo = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7);
  half_vec hi = __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  asm volatile("" : "+x"(lo), "+x"(hi));
  v = __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
#else
inline void in_register(vec&) {}
#endif

template <typename... V>
inline void in_registers(V&... v) {
  (in_register(v), ...);
}

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

// Tells the core a spin-wait is going on (frees the pipeline for its hyper-thread sibling).
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

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

// Threads to use: XLA's pool size, capped by CLIMML_NATIVE_THREADS.
int max_threads(ffi::ThreadPool& pool) {
  int threads = static_cast<int>(std::max<int64_t>(1, pool.num_threads()));
  if (const char* env = std::getenv("CLIMML_NATIVE_THREADS"))
    threads = std::max(1, std::min(threads, std::atoi(env)));
  return threads;
}

// Runs fn(0) ... fn(parts - 1) on the caller and up to `threads - 1` pool threads. Parts are
// claimed one at a time, so the caller starts at once and a pool thread that wakes late (tens of
// microseconds) simply takes fewer of them.
void parallel_for(ffi::ThreadPool& pool, int threads, int parts, std::function<void(int)> fn) {
  auto job = std::make_shared<ForkJoin>();
  job->fn = std::move(fn);
  job->parts = parts;
  for (int p = 1; p < std::min(threads, parts); ++p) pool.Schedule([job] { job->drain(); });
  job->drain();
  while (job->done.load(std::memory_order_acquire) != parts) cpu_relax();
}

// Rows in tiles of 4 (the register tile), the last tile possibly shorter: the units of work.
struct RowTiles {
  int rows;
  int count() const { return (rows + 3) / 4; }
  int begin(int tile) const { return 4 * tile; }
  int end(int tile) const { return std::min(rows, 4 * tile + 4); }
};

// ---------------------------------------------------------------------------------------------
// out[r, n0:n0+16*NV] (+)= a[r, :K] @ m[:K, n0:n0+16*NV] for R rows: the accumulators stay in
// registers while k runs, one vector load of m per k and column vector.

template <int R, int NV>
void matmul_block(int K, const float* a, int lda, const float* m, int ldm, float* out, int ldo,
                  bool accumulate) {
  vec acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < NV; ++j) acc[r][j] = accumulate ? load(out + r * ldo + j * kLanes) : vec{};
  for (int k = 0; k < K; ++k) {
    vec mk[NV];
    for (int j = 0; j < NV; ++j) {
      mk[j] = load(m + k * ldm + j * kLanes);
      in_registers(mk[j]);
    }
    for (int r = 0; r < R; ++r) {
      const float x = a[r * lda + k];
      for (int j = 0; j < NV; ++j) acc[r][j] += x * mk[j];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < NV; ++j) store(out + r * ldo + j * kLanes, acc[r][j]);
}

// The same over all N columns (N a multiple of 16), four vectors at a time.
template <int R>
void matmul_rows(int K, int N, const float* a, int lda, const float* m, float* out, int ldo,
                 bool accumulate) {
  int n = 0;
  for (; n + 4 * kLanes <= N; n += 4 * kLanes)
    matmul_block<R, 4>(K, a, lda, m + n, N, out + n, ldo, accumulate);
  for (; n < N; n += kLanes) matmul_block<R, 1>(K, a, lda, m + n, N, out + n, ldo, accumulate);
}

// ---------------------------------------------------------------------------------------------
// Forward. Per step and tile of R rows x 16 units: the 4 gates' pre-activations accumulate in
// registers (bias + x @ w_in + h_prev @ w), then the gate arithmetic runs on them. Doing the
// input projection here rather than as one XLA matmul saves writing and re-reading (T, B, 4H).

struct Forward {
  int T, B, H, F;
  const float* x;        // (T, B, F) inputs
  const float* w_in;     // (F, 4H)
  const float* b;        // (4H,) both biases
  const float* w;        // (H, 4H)
  const uint8_t* valid;  // (T, B)
  const float *h0, *c0;  // (B, H) state before step 0; null: zeros
  float *hs, *cs;
  float* acts;           // null: not kept (a backward pass will recompute them)
};

// acc[r][q] += a[r, :K] @ m[:K, q*H + u : q*H + u + 16] for the four gate blocks q.
template <int R>
inline void gate_products(int K, const float* a, int lda, const float* m, int G, int u,
                          vec (&acc)[R][4]) {
  const int H = G / 4;
  for (int k = 0; k < K; ++k) {
    const float* mk = m + k * G + u;
    vec m0 = load(mk), m1 = load(mk + H), m2 = load(mk + 2 * H), m3 = load(mk + 3 * H);
    in_registers(m0, m1, m2, m3);
    for (int r = 0; r < R; ++r) {
      const float x = a[r * lda + k];
      acc[r][0] += x * m0;
      acc[r][1] += x * m1;
      acc[r][2] += x * m2;
      acc[r][3] += x * m3;
    }
  }
}

template <int R>
void forward_tile(const Forward& f, size_t s, bool first, int u) {
  const int H = f.H, G = 4 * H;
  const float* x = f.x + s * f.F;
  // At step 0, s is the row itself, so s * H also indexes the initial state.
  const float* h_prev = first ? (f.h0 ? f.h0 + s * H : nullptr) : f.hs + (s - f.B) * H;
  const float* c_prev = first ? (f.c0 ? f.c0 + s * H : nullptr) : f.cs + (s - f.B) * H;
  vec acc[R][4];
  for (int q = 0; q < 4; ++q) {
    const vec bias = load(f.b + q * H + u);
    for (int r = 0; r < R; ++r) acc[r][q] = bias;
  }
  gate_products<R>(f.F, x, f.F, f.w_in, G, u, acc);
  if (h_prev != nullptr) gate_products<R>(H, h_prev, H, f.w, G, u, acc);
  for (int r = 0; r < R; ++r) {
    const size_t row = s + r;
    const vec cp = c_prev ? load(c_prev + r * H + u) : vec{};
    float* act = f.acts ? f.acts + row * G + u : nullptr;
    float* h = f.hs + row * H + u;
    float* c = f.cs + row * H + u;
    if (!f.valid[row]) {  // padded step: carry the state; the backward ignores these gates
      store(c, cp);
      store(h, h_prev ? load(h_prev + r * H + u) : vec{});
      if (act)
        for (int q = 0; q < 4; ++q) store(act + q * H, vec{});
      continue;
    }
    const vec i = sigmoid_v(acc[r][0]), fg = sigmoid_v(acc[r][1]);
    const vec g = tanh_v(acc[r][2]), o = sigmoid_v(acc[r][3]);
    const vec cn = fg * cp + i * g;
    if (act) {
      store(act, i);
      store(act + H, fg);
      store(act + 2 * H, g);
      store(act + 3 * H, o);
    }
    store(c, cn);
    store(h, o * tanh_v(cn));
  }
}

// One tile of rows through all T steps before the next tile starts, so its state stays in cache.
template <int R>
void forward_rows(const Forward& f, int row) {
  for (int t = 0; t < f.T; ++t) {
    const size_t s = static_cast<size_t>(t) * f.B + row;
    for (int u = 0; u < f.H; u += kLanes) forward_tile<R>(f, s, t == 0, u);
  }
}

void forward_range(const Forward& f, int lo, int hi) {
  int row = lo;
  for (; row + 4 <= hi; row += 4) forward_rows<4>(f, row);
  for (; row < hi; ++row) forward_rows<1>(f, row);
}

// ---------------------------------------------------------------------------------------------
// Backward. Per step and tile of rows: the gate cotangents from the kept activations
// (elementwise), then the state cotangent entering the step, dh += dz @ w.T, and optionally the
// input cotangent dx = dz @ w_in.T.

struct Backward {
  int T, B, H, F;
  const float *acts, *cs;
  const float* wt;       // (4H, H) recurrent kernel, transposed
  const float* w_in_t;   // (4H, F) input kernel, transposed; null: no input cotangent
  const uint8_t* valid;  // (T, B)
  const float* c0;       // (B, H) cell state before step 0; null: zeros (the sequence start)
  const float* d_hs;     // (T, B, H) cotangent of the outputs; null: unread
  float *dh, *dc;        // (B, H) state cotangents, carried from step to step
  float *dz, *dx;        // (T, B, 4H), (T, B, F)
};

// Gate cotangents of R rows at step s. Consumes dh of valid rows (zeroing it for the matmul to
// accumulate into); at padded rows the state passed through, so dh and dc are left as they are.
template <int R>
void gate_cotangents(const Backward& b, size_t s, bool first, int row) {
  const int H = b.H, G = 4 * H;
  for (int r = 0; r < R; ++r) {
    const size_t at = s + r;
    float* dz = b.dz + at * G;
    if (!b.valid[at]) {
      std::memset(dz, 0, sizeof(float) * G);
      continue;
    }
    float* dh = b.dh + static_cast<size_t>(row + r) * H;
    float* dc = b.dc + static_cast<size_t>(row + r) * H;
    const float* a = b.acts + at * G;
    const float* c = b.cs + at * H;
    const float* c_prev = first ? (b.c0 ? b.c0 + (row + r) * H : nullptr) : b.cs + (at - b.B) * H;
    const float* d_out = b.d_hs ? b.d_hs + at * H : nullptr;
    for (int u = 0; u < H; u += kLanes) {
      const vec i = load(a + u), f = load(a + H + u), g = load(a + 2 * H + u);
      const vec o = load(a + 3 * H + u);
      const vec cp = c_prev ? load(c_prev + u) : vec{};
      const vec dhv = d_out ? load(dh + u) + load(d_out + u) : load(dh + u);
      const vec th = tanh_v(load(c + u));
      const vec dcv = load(dc + u) + dhv * o * (1.0f - th * th);
      store(dz + u, dcv * g * i * (1.0f - i));
      store(dz + H + u, dcv * cp * f * (1.0f - f));
      store(dz + 2 * H + u, dcv * i * (1.0f - g * g));
      store(dz + 3 * H + u, dhv * th * o * (1.0f - o));
      store(dc + u, dcv * f);
      store(dh + u, vec{});
    }
  }
}

template <int R>
void backward_rows(const Backward& b, int row) {
  const int H = b.H, G = 4 * H;
  for (int t = b.T - 1; t >= 0; --t) {
    const size_t s = static_cast<size_t>(t) * b.B + row;
    gate_cotangents<R>(b, s, t == 0, row);
    const float* dz = b.dz + s * G;
    if (b.w_in_t) matmul_rows<R>(G, b.F, dz, G, b.w_in_t, b.dx + s * b.F, b.F, false);
    // Entering step 0 only a chunk's initial state needs a cotangent (the zero state is constant).
    if (t > 0 || b.c0) matmul_rows<R>(G, H, dz, G, b.wt, b.dh + static_cast<size_t>(row) * H, H, true);
  }
}

void backward_range(const Backward& b, int lo, int hi) {
  int row = lo;
  for (; row + 4 <= hi; row += 4) backward_rows<4>(b, row);
  for (; row < hi; ++row) backward_rows<1>(b, row);
}

ffi::Error check_multiple(int64_t n, const char* what) {
  if (n <= 0 || n % kLanes != 0)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      std::string(what) + " must be a positive multiple of 16");
  return ffi::Error::Success();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// FFI handlers.

// An optional input: its data, or null when empty.
static const float* given(ffi::Buffer<ffi::F32>& b) {
  return b.element_count() > 0 ? b.typed_data() : nullptr;
}

// h0, c0: (B, H) initial state, or empty for zeros. acts: (T, B, 4H), or empty to keep nothing.
static ffi::Error LstmForwardImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w_in,
                                  ffi::Buffer<ffi::F32> b, ffi::Buffer<ffi::F32> w,
                                  ffi::Buffer<ffi::U8> valid, ffi::Buffer<ffi::F32> h0,
                                  ffi::Buffer<ffi::F32> c0,
                                  ffi::ResultBuffer<ffi::F32> hs, ffi::ResultBuffer<ffi::F32> cs,
                                  ffi::ResultBuffer<ffi::F32> acts, ffi::ThreadPool pool) {
  const auto dims = x.dimensions();
  const Forward f{static_cast<int>(dims[0]),     static_cast<int>(dims[1]),
                  static_cast<int>(w.dimensions()[0]), static_cast<int>(dims[2]),
                  x.typed_data(), w_in.typed_data(), b.typed_data(),
                  w.typed_data(), valid.typed_data(), given(h0), given(c0),
                  hs->typed_data(), cs->typed_data(),
                  acts->element_count() > 0 ? acts->typed_data() : nullptr};
  if (auto e = check_multiple(f.H, "hidden size"); e.failure()) return e;
  const RowTiles tiles{f.B};
  parallel_for(pool, max_threads(pool), tiles.count(),
               [&](int k) { forward_range(f, tiles.begin(k), tiles.end(k)); });
  return ffi::Error::Success();
}

// d_hs: (T, B, H) cotangent of the outputs, or empty when they are unread; d_h, d_c: (B, H)
// cotangents of the final state, or empty; w_in_t: (4H, F) transposed input kernel, or empty when
// the input cotangent dx (T, B, F) is not wanted (dx is then left unwritten, and should be empty);
// c0: (B, H) the cell state before step 0 when this is a later chunk of a sequence, else empty.
// d_h0, d_c0 (B, H): the cotangents of that initial state (written only when c0 is given).
static ffi::Error LstmBackwardImpl(ffi::Buffer<ffi::F32> acts, ffi::Buffer<ffi::F32> cs,
                                   ffi::Buffer<ffi::F32> wt, ffi::Buffer<ffi::F32> w_in_t,
                                   ffi::Buffer<ffi::U8> valid, ffi::Buffer<ffi::F32> c0,
                                   ffi::Buffer<ffi::F32> d_hs, ffi::Buffer<ffi::F32> d_h,
                                   ffi::Buffer<ffi::F32> d_c, ffi::ResultBuffer<ffi::F32> dz,
                                   ffi::ResultBuffer<ffi::F32> dx, ffi::ResultBuffer<ffi::F32> d_h0,
                                   ffi::ResultBuffer<ffi::F32> d_c0, ffi::ThreadPool pool) {
  const auto dims = cs.dimensions();
  const int T = dims[0], B = dims[1], H = dims[2];
  if (auto e = check_multiple(H, "hidden size"); e.failure()) return e;
  const bool want_dx = w_in_t.element_count() > 0;
  const int F = want_dx ? static_cast<int>(w_in_t.dimensions()[1]) : 0;
  if (want_dx) {
    if (auto e = check_multiple(F, "input features"); e.failure()) return e;
  }
  const size_t state = static_cast<size_t>(B) * H;
  std::vector<float> dh(state, 0.0f), dc(state, 0.0f);
  if (d_h.element_count() == state) std::memcpy(dh.data(), d_h.typed_data(), sizeof(float) * state);
  if (d_c.element_count() == state) std::memcpy(dc.data(), d_c.typed_data(), sizeof(float) * state);
  const Backward bw{T, B, H, F,
                    acts.typed_data(), cs.typed_data(), wt.typed_data(),
                    want_dx ? w_in_t.typed_data() : nullptr, valid.typed_data(), given(c0),
                    d_hs.element_count() == state * T ? d_hs.typed_data() : nullptr,
                    dh.data(), dc.data(), dz->typed_data(),
                    want_dx ? dx->typed_data() : nullptr};
  const RowTiles tiles{B};
  parallel_for(pool, max_threads(pool), tiles.count(),
               [&](int k) { backward_range(bw, tiles.begin(k), tiles.end(k)); });
  if (bw.c0 && d_h0->element_count() == state && d_c0->element_count() == state) {
    std::memcpy(d_h0->typed_data(), dh.data(), sizeof(float) * state);
    std::memcpy(d_c0->typed_data(), dc.data(), sizeof(float) * state);
  }
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(ClimmlLstmForward, LstmForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // x
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w_in
                                  .Arg<ffi::Buffer<ffi::F32>>()  // b
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w
                                  .Arg<ffi::Buffer<ffi::U8>>()   // valid
                                  .Arg<ffi::Buffer<ffi::F32>>()  // h0
                                  .Arg<ffi::Buffer<ffi::F32>>()  // c0
                                  .Ret<ffi::Buffer<ffi::F32>>()  // hs
                                  .Ret<ffi::Buffer<ffi::F32>>()  // cs
                                  .Ret<ffi::Buffer<ffi::F32>>()  // acts
                                  .Ctx<ffi::ThreadPool>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(ClimmlLstmBackward, LstmBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // acts
                                  .Arg<ffi::Buffer<ffi::F32>>()  // cs
                                  .Arg<ffi::Buffer<ffi::F32>>()  // wt
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w_in_t
                                  .Arg<ffi::Buffer<ffi::U8>>()   // valid
                                  .Arg<ffi::Buffer<ffi::F32>>()  // c0
                                  .Arg<ffi::Buffer<ffi::F32>>()  // d_hs
                                  .Arg<ffi::Buffer<ffi::F32>>()  // d_h
                                  .Arg<ffi::Buffer<ffi::F32>>()  // d_c
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dz
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dx
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d_h0
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d_c0
                                  .Ctx<ffi::ThreadPool>());
