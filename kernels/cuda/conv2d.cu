// conv2d, conv2d_backward_input, conv2d_backward_filter on the GPU, float32. Depthwise
// grouping (one input channel per group) runs the hand-written kernels of
// depthwise_conv2d.cu; every other grouping runs cuDNN's convolution calls on NHWC tensors.
//
// Filter layout: ours is HWIO [KH,KW,Cin/groups,Cout]; cuDNN's NHWC filter is
// [Cout,KH,KW,Cin/groups] (KRSC). The forward and data-gradient calls transpose the filter
// into workspace first; the filter gradient is computed in KRSC in workspace and
// transposed into the output. Filters are small next to activations, so this is cheap.
//
// Padding: cuDNN pads symmetrically, explicit pads [top,bottom,left,right] need not be
// (TensorFlow "same" puts an odd extra row after). Padding `top` on both sides gives
// exactly the same convolution whenever it gives the same output size (the same windows,
// reading the same zeros). Otherwise the input is first copied into a zero-padded buffer
// in workspace holding the difference, and cuDNN pads min(top, bottom) on both sides; the
// data gradient is computed on that buffer and cropped.
//
// Algorithms: chosen once per geometry from cudnnGet*Algorithm_v7's ranking (deterministic
// algorithms only, unless set_nondeterministic_allowed(true), and then after them; tensor-
// core ones only with TF32 on) by running the candidates in order until one succeeds, then
// cached. That first run happens before a CUDA graph is captured. A non-deterministic
// choice is reported through the backend's notes (the training log shows them).
#include <algorithm>
#include <array>
#include <climits>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/depthwise_conv2d.h"

namespace agilenn::cuda {
namespace {

// ---- kernels

// An NHWC batch placed at (top, left) inside a zero-padded batch of ph × pw pixels.
struct PadShape {
  int64_t n, h, w, c;
  int64_t top, left;
  int64_t ph, pw;
};

__global__ void pad_kernel(PadShape s, const float* x, float* padded, int64_t total) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step) {
    const int64_t ci = i % s.c;
    int64_t r = i / s.c;
    const int64_t px = r % s.pw;
    r /= s.pw;
    const int64_t py = r % s.ph, n = r / s.ph;
    const int64_t iy = py - s.top, ix = px - s.left;
    padded[i] = iy >= 0 && iy < s.h && ix >= 0 && ix < s.w ? x[((n * s.h + iy) * s.w + ix) * s.c + ci] : 0.0f;
  }
}

// The adjoint of padding: the interior of the padded batch.
__global__ void crop_kernel(PadShape s, const float* padded, float* x, int64_t total) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step) {
    const int64_t ci = i % s.c;
    int64_t r = i / s.c;
    const int64_t ix = r % s.w;
    r /= s.w;
    const int64_t iy = r % s.h, n = r / s.h;
    x[i] = padded[((n * s.ph + iy + s.top) * s.pw + ix + s.left) * s.c + ci];
  }
}

// HWIO [taps, cin_g, cout] -> KRSC [cout, taps, cin_g]; one thread per KRSC element.
__global__ void hwio_to_krsc_kernel(const float* hwio, float* krsc, int64_t taps, int64_t cin_g, int64_t cout,
                                    int64_t total) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step) {
    const int64_t ci = i % cin_g, r = i / cin_g;
    const int64_t t = r % taps, k = r / taps;
    krsc[i] = hwio[(t * cin_g + ci) * cout + k];
  }
}

// KRSC -> HWIO; one thread per HWIO element.
__global__ void krsc_to_hwio_kernel(const float* krsc, float* hwio, int64_t taps, int64_t cin_g, int64_t cout,
                                    int64_t total) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step) {
    const int64_t k = i % cout, r = i / cout;
    const int64_t ci = r % cin_g, t = r / cin_g;
    hwio[i] = krsc[(k * taps + t) * cin_g + ci];
  }
}

// ---- launchers

int64_t padded_numel(const PadShape& s) { return s.n * s.ph * s.pw * s.c; }

void launch_pad(const PadShape& s, const float* x, float* padded) {
  const int64_t total = padded_numel(s);
  pad_kernel<<<blocks_for(total), kThreads, 0, stream()>>>(s, x, padded, total);
  AGILENN_CUDA_CHECK_LAUNCH();
}

void launch_crop(const PadShape& s, const float* padded, float* x) {
  const int64_t total = s.n * s.h * s.w * s.c;
  crop_kernel<<<blocks_for(total), kThreads, 0, stream()>>>(s, padded, x, total);
  AGILENN_CUDA_CHECK_LAUNCH();
}

void launch_hwio_to_krsc(const ConvGeometry& g, const float* hwio, float* krsc) {
  const int64_t total = g.kh * g.kw * g.cin_g * g.cout;
  hwio_to_krsc_kernel<<<blocks_for(total), kThreads, 0, stream()>>>(hwio, krsc, g.kh * g.kw, g.cin_g, g.cout, total);
  AGILENN_CUDA_CHECK_LAUNCH();
}

void launch_krsc_to_hwio(const ConvGeometry& g, const float* krsc, float* hwio) {
  const int64_t total = g.kh * g.kw * g.cin_g * g.cout;
  krsc_to_hwio_kernel<<<blocks_for(total), kThreads, 0, stream()>>>(krsc, hwio, g.kh * g.kw, g.cin_g, g.cout, total);
  AGILENN_CUDA_CHECK_LAUNCH();
}

// ---- cuDNN: descriptors (RAII), the padding plan, algorithm choice

class TensorDesc {
 public:
  TensorDesc() { AGILENN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d_)); }
  ~TensorDesc() { (void)cudnnDestroyTensorDescriptor(d_); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
  cudnnTensorDescriptor_t get() const { return d_; }

 private:
  cudnnTensorDescriptor_t d_ = nullptr;
};

class FilterDesc {
 public:
  FilterDesc() { AGILENN_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d_)); }
  ~FilterDesc() { (void)cudnnDestroyFilterDescriptor(d_); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
  cudnnFilterDescriptor_t get() const { return d_; }

 private:
  cudnnFilterDescriptor_t d_ = nullptr;
};

class ConvDesc {
 public:
  ConvDesc() { AGILENN_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d_)); }
  ~ConvDesc() { (void)cudnnDestroyConvolutionDescriptor(d_); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
  cudnnConvolutionDescriptor_t get() const { return d_; }

 private:
  cudnnConvolutionDescriptor_t d_ = nullptr;
};

// How one convolution is handed to cuDNN: symmetric pads, plus an explicit zero-padded
// copy of the input when the pads cannot be made symmetric.
struct CudnnPlan {
  ConvGeometry g;
  int64_t pad_h = 0, pad_w = 0;  // symmetric padding cuDNN applies
  PadShape padded{};             // the input as cuDNN sees it (== the input unless copy)
  bool copy = false;
};

// One spatial dimension: the symmetric padding cuDNN applies and the extra zeros to copy
// in before and after.
struct DimPlan {
  int64_t pad, extra_before, extra_after;
};

DimPlan plan_dim(int64_t in, int64_t kernel, int64_t stride, int64_t dilation, int64_t before, int64_t after,
                 int64_t out) {
  const int64_t room = in + 2 * before - (dilation * (kernel - 1) + 1);
  if (room >= 0 && room / stride + 1 == out) return {before, 0, 0};
  const int64_t pad = std::min(before, after);
  return {pad, before - pad, after - pad};
}

CudnnPlan plan_conv(const Node& node, const Shape& x, const Shape& w) {
  const Attrs& a = node.attrs;
  const std::vector<int64_t>& pads = a.ints("pads");
  CudnnPlan p;
  p.g = conv_geometry(x, w, a.ints("stride"), a.ints("dilation"), pads, a.i("groups"));
  const ConvGeometry& g = p.g;
  const DimPlan ph = plan_dim(g.h, g.kh, g.stride_h, g.dil_h, pads[0], pads[1], g.oh);
  const DimPlan pw = plan_dim(g.w, g.kw, g.stride_w, g.dil_w, pads[2], pads[3], g.ow);
  p.pad_h = ph.pad;
  p.pad_w = pw.pad;
  p.padded = {g.n, g.h, g.w, g.c, ph.extra_before, pw.extra_before, g.h + ph.extra_before + ph.extra_after,
              g.w + pw.extra_before + pw.extra_after};
  p.copy = p.padded.ph != g.h || p.padded.pw != g.w;  // extras are never negative
  return p;
}

int as_int(int64_t v, const char* what) {
  AGILENN_CHECK(v <= INT_MAX, "conv2d: " << what << " " << v << " exceeds cuDNN's 32-bit limit");
  return static_cast<int>(v);
}

// Off by default: FMA_MATH keeps cuDNN from using TF32 tensor cores on float32 (which
// DEFAULT_MATH allows on Ampere and later).
cudnnMathType_t math_type() { return tf32() ? CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION : CUDNN_FMA_MATH; }

struct Descriptors {
  TensorDesc x, y;  // x as cuDNN sees it (the padded copy when there is one)
  FilterDesc w;     // KRSC
  ConvDesc conv;

  Descriptors(const CudnnPlan& p, cudnnMathType_t math) {
    const ConvGeometry& g = p.g;
    as_int(padded_numel(p.padded), "input size");
    as_int(g.n * g.oh * g.ow * g.cout, "output size");
    AGILENN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(x.get(), CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, as_int(g.n, "batch"),
                                                   as_int(g.c, "channels"), as_int(p.padded.ph, "height"),
                                                   as_int(p.padded.pw, "width")));
    AGILENN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(y.get(), CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, as_int(g.n, "batch"),
                                                   as_int(g.cout, "channels"), as_int(g.oh, "height"),
                                                   as_int(g.ow, "width")));
    AGILENN_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w.get(), CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC,
                                                   as_int(g.cout, "channels"), as_int(g.cin_g, "channels"),
                                                   as_int(g.kh, "filter height"), as_int(g.kw, "filter width")));
    AGILENN_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
        conv.get(), as_int(p.pad_h, "padding"), as_int(p.pad_w, "padding"), as_int(g.stride_h, "stride"),
        as_int(g.stride_w, "stride"), as_int(g.dil_h, "dilation"), as_int(g.dil_w, "dilation"),
        CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    AGILENN_CUDNN_CHECK(cudnnSetConvolutionGroupCount(conv.get(), as_int(g.groups, "groups")));
    AGILENN_CUDNN_CHECK(cudnnSetConvolutionMathType(conv.get(), math));
    // The padding plan must reproduce the graph's output shape exactly.
    int on = 0, oc = 0, oh = 0, ow = 0;
    AGILENN_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(conv.get(), x.get(), w.get(), &on, &oc, &oh, &ow));
    AGILENN_CHECK(on == g.n && oc == g.cout && oh == g.oh && ow == g.ow,
                  "conv2d: cuDNN output [" << on << "," << oh << "," << ow << "," << oc << "] differs from ["
                                           << g.n << "," << g.oh << "," << g.ow << "," << g.cout << "]");
  }
};

// Workspace split into two float buffers (padded input or gradient, KRSC filter) and
// cuDNN's scratch, each 256-byte aligned. One workspace() call: growing it later would
// hand out a new buffer, without the data already filled into the old one.
struct Scratch {
  float* a = nullptr;
  float* b = nullptr;
  void* library = nullptr;

  Scratch(int64_t a_floats, int64_t b_floats, size_t library_bytes) {
    const size_t a_bytes = aligned(static_cast<size_t>(a_floats) * sizeof(float));
    const size_t b_bytes = aligned(static_cast<size_t>(b_floats) * sizeof(float));
    char* base = static_cast<char*>(workspace(a_bytes + b_bytes + library_bytes));
    if (a_floats) a = reinterpret_cast<float*>(base);
    if (b_floats) b = reinterpret_cast<float*>(base + a_bytes);
    if (library_bytes) library = base + a_bytes + b_bytes;
  }
  static size_t aligned(size_t bytes) { return (bytes + 255) / 256 * 256; }
};

enum class Pass : int64_t { forward, backward_input, backward_filter };

const char* pass_name(Pass pass) {
  switch (pass) {
    case Pass::forward: return "conv2d";
    case Pass::backward_input: return "conv2d_backward_input";
    case Pass::backward_filter: return "conv2d_backward_filter";
  }
  return "conv2d";
}

// Everything an algorithm choice depends on, the permission of non-deterministic ones
// included.
using AlgoKey = std::array<int64_t, 20>;

AlgoKey algo_key(Pass pass, const CudnnPlan& p, cudnnMathType_t math) {
  const ConvGeometry& g = p.g;
  return {static_cast<int64_t>(pass), g.n,      g.c,        p.padded.ph, p.padded.pw, g.cout,   g.cin_g,
          g.kh,                       g.kw,     g.oh,       g.ow,        p.pad_h,     p.pad_w,  g.stride_h,
          g.stride_w,                 g.dil_h,  g.dil_w,    g.groups,    static_cast<int64_t>(math),
          nondeterministic_allowed() ? 1 : 0};
}

struct AlgoChoice {
  int algo;
  size_t workspace_bytes;
  bool deterministic;
};

struct Candidate {
  int algo;
  bool deterministic;
};

class AlgoCache {
 public:
  std::optional<AlgoChoice> find(const AlgoKey& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = choices_.find(key);
    if (it == choices_.end()) return std::nullopt;
    return it->second;
  }
  void put(const AlgoKey& key, AlgoChoice choice) {
    std::lock_guard<std::mutex> lock(mu_);
    choices_[key] = choice;
  }

 private:
  std::mutex mu_;
  std::map<AlgoKey, AlgoChoice> choices_;

 public:
  size_t nondeterministic() {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<size_t>(std::count_if(choices_.begin(), choices_.end(),
                                             [](const auto& c) { return !c.second.deterministic; }));
  }
};

AlgoCache& algo_cache() {
  static AlgoCache* cache = new AlgoCache();
  return *cache;
}

// Candidates bigger than this are skipped (cuDNN ranks some memory-hungry ones first).
constexpr size_t kMaxAlgoWorkspace = size_t{512} << 20;

// cuDNN's heuristic ranking, filtered: supported, within the workspace cap, no tensor-core
// math while TF32 is off, deterministic unless non-deterministic ones are allowed (then
// after the deterministic ones); each group in cuDNN's order.
template <class Perf>
std::vector<Candidate> ranked(const std::vector<Perf>& perf, int count, cudnnMathType_t math) {
  std::vector<Candidate> deterministic, other;
  for (int i = 0; i < count; ++i) {
    const Perf& r = perf[static_cast<size_t>(i)];
    if (r.status != CUDNN_STATUS_SUCCESS || r.memory > kMaxAlgoWorkspace) continue;
    const bool tensor_cores = r.mathType == CUDNN_TENSOR_OP_MATH || r.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    if (math == CUDNN_FMA_MATH && tensor_cores) continue;
    if (r.determinism == CUDNN_DETERMINISTIC)
      deterministic.push_back({static_cast<int>(r.algo), true});
    else if (nondeterministic_allowed())
      other.push_back({static_cast<int>(r.algo), false});
  }
  deterministic.insert(deterministic.end(), other.begin(), other.end());
  return deterministic;
}

std::vector<Candidate> candidates(Pass pass, const Descriptors& d, cudnnMathType_t math) {
  int count = 0;
  switch (pass) {
    case Pass::forward: {
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
      AGILENN_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(cudnn(), d.x.get(), d.w.get(), d.conv.get(),
                                                                 d.y.get(), static_cast<int>(perf.size()), &count,
                                                                 perf.data()));
      return ranked(perf, count, math);
    }
    case Pass::backward_input: {
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
      AGILENN_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnn(), d.w.get(), d.y.get(), d.conv.get(),
                                                                      d.x.get(), static_cast<int>(perf.size()),
                                                                      &count, perf.data()));
      return ranked(perf, count, math);
    }
    case Pass::backward_filter: {
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);
      AGILENN_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(cudnn(), d.x.get(), d.y.get(), d.conv.get(),
                                                                        d.w.get(), static_cast<int>(perf.size()),
                                                                        &count, perf.data()));
      return ranked(perf, count, math);
    }
  }
  return {};
}

size_t workspace_bytes(Pass pass, const Descriptors& d, int algo) {
  size_t bytes = 0;
  switch (pass) {
    case Pass::forward:
      AGILENN_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(
          cudnn(), d.x.get(), d.w.get(), d.conv.get(), d.y.get(), static_cast<cudnnConvolutionFwdAlgo_t>(algo),
          &bytes));
      break;
    case Pass::backward_input:
      AGILENN_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(
          cudnn(), d.w.get(), d.y.get(), d.conv.get(), d.x.get(), static_cast<cudnnConvolutionBwdDataAlgo_t>(algo),
          &bytes));
      break;
    case Pass::backward_filter:
      AGILENN_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(
          cudnn(), d.x.get(), d.y.get(), d.conv.get(), d.w.get(), static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo),
          &bytes));
      break;
  }
  return bytes;
}

// Runs `attempt(algo, workspace bytes)` (the whole pass: layout kernels and the cuDNN
// call) with the cached algorithm, or, on the first call for this geometry, with each
// candidate in turn until one succeeds: cuDNN's heuristics occasionally rank an algorithm
// that then refuses the call.
template <class Attempt>
void run_cudnn(Pass pass, const CudnnPlan& p, const Descriptors& d, cudnnMathType_t math, Attempt&& attempt) {
  const AlgoKey key = algo_key(pass, p, math);
  if (const std::optional<AlgoChoice> c = algo_cache().find(key)) {
    attempt(c->algo, c->workspace_bytes);
    return;
  }
  AGILENN_CHECK(!capturing(), pass_name(pass) << ": cuDNN algorithm chosen while a CUDA graph is being captured; "
                                              << "run the step once before capturing");
  const ConvGeometry& g = p.g;
  auto geometry = [&] {
    std::ostringstream m;
    m << "input [" << g.n << "," << g.h << "," << g.w << "," << g.c << "], filter [" << g.kh << "," << g.kw << ","
      << g.cin_g << "," << g.cout << "], stride " << g.stride_h << "x" << g.stride_w << ", dilation " << g.dil_h
      << "x" << g.dil_w << ", groups " << g.groups;
    return m.str();
  };
  std::string last_error = nondeterministic_allowed()
                               ? "cuDNN lists no usable algorithm"
                               : "cuDNN lists no usable deterministic algorithm (non-deterministic ones are allowed "
                                 "only on request: agilenn-train --cudnn-nondeterministic)";
  for (const Candidate& c : candidates(pass, d, math)) {
    try {
      const size_t bytes = workspace_bytes(pass, d, c.algo);
      attempt(c.algo, bytes);
      algo_cache().put(key, {c.algo, bytes, c.deterministic});
      if (!c.deterministic)
        note(pass_name(pass) + std::string(": non-deterministic cuDNN algorithm ") + std::to_string(c.algo) +
             " for " + geometry() + " (results may differ from run to run)");
      return;
    } catch (const Error& e) {
      last_error = e.what();
    }
  }
  AGILENN_THROW(pass_name(pass) << ": no cuDNN algorithm runs " << geometry() << ": " << last_error);
}

const float kOne = 1.0f, kZero = 0.0f;

// y = conv(x, w).
void cudnn_forward(const Node& node, const Tensor& x, const Tensor& w, Tensor& y) {
  const CudnnPlan p = plan_conv(node, x.shape(), w.shape());
  const cudnnMathType_t math = math_type();
  const Descriptors d(p, math);
  run_cudnn(Pass::forward, p, d, math, [&](int algo, size_t bytes) {
    Scratch s(p.copy ? padded_numel(p.padded) : 0, w.numel(), bytes);
    const float* xin = x.data<float>();
    if (p.copy) {
      launch_pad(p.padded, xin, s.a);
      xin = s.a;
    }
    launch_hwio_to_krsc(p.g, w.data<float>(), s.b);
    AGILENN_CUDNN_CHECK(cudnnConvolutionForward(cudnn(), &kOne, d.x.get(), xin, d.w.get(), s.b, d.conv.get(),
                                                static_cast<cudnnConvolutionFwdAlgo_t>(algo), s.library, bytes,
                                                &kZero, d.y.get(), y.data<float>()));
  });
}

// dx = the adjoint of conv(·, w) applied to gy.
void cudnn_backward_input(const Node& node, const Tensor& gy, const Tensor& w, Tensor& dx) {
  const CudnnPlan p = plan_conv(node, dx.shape(), w.shape());
  const cudnnMathType_t math = math_type();
  const Descriptors d(p, math);
  run_cudnn(Pass::backward_input, p, d, math, [&](int algo, size_t bytes) {
    Scratch s(p.copy ? padded_numel(p.padded) : 0, w.numel(), bytes);
    launch_hwio_to_krsc(p.g, w.data<float>(), s.b);
    float* out = p.copy ? s.a : dx.data<float>();
    AGILENN_CUDNN_CHECK(cudnnConvolutionBackwardData(cudnn(), &kOne, d.w.get(), s.b, d.y.get(), gy.data<float>(),
                                                     d.conv.get(), static_cast<cudnnConvolutionBwdDataAlgo_t>(algo),
                                                     s.library, bytes, &kZero, d.x.get(), out));
    if (p.copy) launch_crop(p.padded, s.a, dx.data<float>());
  });
}

// dw = Σ over pixels of x-window ⊗ gy.
void cudnn_backward_filter(const Node& node, const Tensor& x, const Tensor& gy, Tensor& dw) {
  const CudnnPlan p = plan_conv(node, x.shape(), dw.shape());
  const cudnnMathType_t math = math_type();
  const Descriptors d(p, math);
  run_cudnn(Pass::backward_filter, p, d, math, [&](int algo, size_t bytes) {
    Scratch s(p.copy ? padded_numel(p.padded) : 0, dw.numel(), bytes);
    const float* xin = x.data<float>();
    if (p.copy) {
      launch_pad(p.padded, xin, s.a);
      xin = s.a;
    }
    AGILENN_CUDNN_CHECK(cudnnConvolutionBackwardFilter(cudnn(), &kOne, d.x.get(), xin, d.y.get(), gy.data<float>(),
                                                       d.conv.get(), static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo),
                                                       s.library, bytes, &kZero, d.w.get(), s.b));
    launch_krsc_to_hwio(p.g, s.b, dw.data<float>());
  });
}

ConvGeometry geometry_of(const Node& node, const Shape& x, const Shape& w) {
  const Attrs& a = node.attrs;
  return conv_geometry(x, w, a.ints("stride"), a.ints("dilation"), a.ints("pads"), a.i("groups"));
}

// Empty operands: nothing to compute, or (an empty batch's filter gradient) zeros.
bool handled_empty(std::span<const Tensor> in, Tensor& out) {
  if (out.numel() == 0) return true;
  if (in[0].numel() != 0 && in[1].numel() != 0) return false;
  AGILENN_CUDA_CHECK(cudaMemsetAsync(out.raw(), 0, out.nbytes(), stream()));
  return true;
}

}  // namespace

size_t nondeterministic_convolutions() { return algo_cache().nondeterministic(); }

// ---- registration

void register_conv2d(KernelTable& table) {
  table.add("conv2d", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_f32(out.dtype(), node, [&](float) {
      if (handled_empty(in, out)) return;
      const ConvGeometry g = geometry_of(node, in[0].shape(), in[1].shape());
      if (is_depthwise(g))
        depthwise_conv2d_forward(depthwise_geometry(g), in[0].data<float>(), in[1].data<float>(), out.data<float>());
      else cudnn_forward(node, in[0], in[1], out);
    });
  });
  table.add("conv2d_backward_input", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_f32(out.dtype(), node, [&](float) {
      if (handled_empty(in, out)) return;
      const ConvGeometry g = geometry_of(node, node.attrs.ints("input_shape"), in[1].shape());
      if (is_depthwise(g))
        depthwise_conv2d_backward_input(depthwise_geometry(g), in[0].data<float>(), in[1].data<float>(),
                                        out.data<float>());
      else cudnn_backward_input(node, in[0], in[1], out);
    });
  });
  table.add("conv2d_backward_filter", [](const Node& node, std::span<const Tensor> in, Tensor& out) {
    dispatch_f32(out.dtype(), node, [&](float) {
      if (handled_empty(in, out)) return;
      const ConvGeometry g = geometry_of(node, in[0].shape(), node.attrs.ints("filter_shape"));
      if (is_depthwise(g))
        depthwise_conv2d_backward_filter(depthwise_geometry(g), in[0].data<float>(), in[1].data<float>(),
                                         out.data<float>());
      else cudnn_backward_filter(node, in[0], in[1], out);
    });
  });
}

}  // namespace agilenn::cuda
