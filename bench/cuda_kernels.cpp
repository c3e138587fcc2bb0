// GPU kernel benchmarks (built with CUDA only) and the GPU ceilings.
//
// The hand-written CUDA kernels against their baselines, at the shapes of
// bench/kernel_cases.h (paper batch 64 here):
//   BM_Depthwise/cuda/<shape>/<fwd|dgrad|wgrad>/<kernel|cudnn_grouped>
//   BM_Quantize/cuda/<shape>/<kernel|unfused|reference>
//   BM_AttributionStats/cuda/<shape>/<kernel|unfused>
//   BM_QuantizeBackward/cuda/<shape>/<dx|dc>/<kernel|unfused>
//   BM_AttributionStatsBackward/cuda/<shape>/<ddelta|da>/<kernel|unfused>
//   BM_SoftmaxCrossEntropy/cuda/<shape>/<kernel|unfused>
// "kernel" and the unfused baselines are op graphs run by an Executor on cuda_backend();
// cudnn_grouped calls cuDNN's grouped convolution (group count = channels) directly.
//
// Timing: every input set is run once, then each set's run is recorded as a CUDA graph
// (Backend::record) so host dispatch does not count. Runs rotate over K input sets whose
// total exceeds 3× the L2, so no run finds its inputs in the L2 left by the one before.
// Per benchmark iteration, 51 runs are queued behind a device memset long enough that the
// host never starves the GPU, each bracketed by events on cuda::stream(); the iteration's
// time is their median (manual time). Counters as on the CPU, against the GPU ceilings.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <sstream>

#include "bench/common.h"
#include "bench/kernel_cases.h"
#include "engine/ir/shape_util.h"
#include "engine/runtime/executor.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/device.h"

namespace agilenn::bench {
namespace {

size_t gpu_l2_bytes();  // of the current GPU

constexpr int kRunsPerIteration = 51;
constexpr int kIterations = 10;

// Events created together and destroyed together.
class Events {
 public:
  explicit Events(size_t n) : events_(n, nullptr) {
    try {
      for (cudaEvent_t& e : events_) AGILENN_CUDA_CHECK(cudaEventCreate(&e));
    } catch (...) {
      destroy();
      throw;
    }
  }
  ~Events() { destroy(); }
  Events(const Events&) = delete;
  Events& operator=(const Events&) = delete;
  cudaEvent_t operator[](size_t i) const { return events_[i]; }
  // Seconds between events i and j (both recorded and complete).
  double seconds(size_t i, size_t j) const {
    float ms = 0;
    AGILENN_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[i], events_[j]));
    return static_cast<double>(ms) * 1e-3;
  }

 private:
  void destroy() {
    // Destruction only releases handles; a failure here has nothing left to report to.
    for (cudaEvent_t e : events_)
      if (e) (void)cudaEventDestroy(e);
  }
  std::vector<cudaEvent_t> events_;
};

// A device buffer whose memset keeps the stream busy while the host queues timed runs.
struct Blocker {
  std::shared_ptr<Storage> buffer;
  size_t bytes = size_t{256} << 20;
  double seconds = 0;  // one memset of it
};

Blocker& blocker() {
  static Blocker* b = [] {
    auto* bl = new Blocker;
    bl->buffer = cuda::allocate(bl->bytes);
    Events ev(2);
    std::vector<double> t;
    for (int r = 0; r < 5; ++r) {
      AGILENN_CUDA_CHECK(cudaEventRecord(ev[0], cuda::stream()));
      AGILENN_CUDA_CHECK(cudaMemsetAsync(bl->buffer->data(), r + 1, bl->bytes, cuda::stream()));
      AGILENN_CUDA_CHECK(cudaEventRecord(ev[1], cuda::stream()));
      AGILENN_CUDA_CHECK(cudaEventSynchronize(ev[1]));
      t.push_back(ev.seconds(0, 1));
    }
    std::sort(t.begin(), t.end());
    bl->seconds = t[t.size() / 2];
    return bl;
  }();
  return *b;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Times launch(k) (work queued on cuda::stream() for input set k) as described above;
// returns the mean of the iterations' medians (the benchmark's reported time).
double time_on_gpu(benchmark::State& state, int sets, const std::function<void(int)>& launch) {
  const Blocker& bl = blocker();
  // Warm-up over every set, which also measures what queuing one run costs the host.
  const int warm = std::max(sets, 8);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < warm; ++i) launch(i % sets);
  const double host_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / warm;
  AGILENN_CUDA_CHECK(cudaStreamSynchronize(cuda::stream()));
  const double queue_s = 1.5 * kRunsPerIteration * (host_s + 4e-6);  // + two event records per run
  const int memsets = std::clamp(static_cast<int>(std::ceil(queue_s / std::max(bl.seconds, 1e-6))), 1, 512);

  Events ev(kRunsPerIteration + 1);
  std::vector<double> all;
  double sum_of_medians = 0;
  int next = 0;
  for (auto _ : state) {
    for (int b = 0; b < memsets; ++b)
      AGILENN_CUDA_CHECK(cudaMemsetAsync(bl.buffer->data(), (b % 255) + 1, bl.bytes, cuda::stream()));
    AGILENN_CUDA_CHECK(cudaEventRecord(ev[0], cuda::stream()));
    for (int r = 0; r < kRunsPerIteration; ++r) {
      launch(next);
      next = (next + 1) % sets;
      AGILENN_CUDA_CHECK(cudaEventRecord(ev[static_cast<size_t>(r) + 1], cuda::stream()));
    }
    AGILENN_CUDA_CHECK(cudaEventSynchronize(ev[kRunsPerIteration]));
    std::vector<double> runs;
    for (size_t r = 0; r < kRunsPerIteration; ++r) runs.push_back(ev.seconds(r, r + 1));
    all.insert(all.end(), runs.begin(), runs.end());
    const double m = median(runs);
    sum_of_medians += m;
    state.SetIterationTime(m);
  }
  std::sort(all.begin(), all.end());
  if (!all.empty()) {
    state.counters["median_us"] = all[all.size() / 2] * 1e6;
    state.counters["p90_us"] = all[all.size() * 9 / 10] * 1e6;
  }
  state.counters["sets"] = sets;
  return state.iterations() > 0 ? sum_of_medians / static_cast<double>(state.iterations()) : 0.0;
}

// Input sets to rotate over: their total at least 3× the L2, at most 8 GiB.
int sets_for(double set_bytes) {
  const double l2 = static_cast<double>(gpu_l2_bytes());
  const double by_l2 = std::ceil(3.0 * l2 / std::max(set_bytes, 1.0));
  const double by_memory = std::floor(8.0 * double(size_t{1} << 30) / std::max(set_bytes, 1.0));
  return static_cast<int>(std::clamp(std::min(by_l2, by_memory), 2.0, 512.0));
}

// Host tensors for set k: a few distinct random draws, reused round-robin (the sets
// differ in address, which is what defeats the L2; values stay random, never zero).
constexpr int kHostDraws = 4;
Tensor host_input(const Input& in, size_t input_index, int set) {
  return random_input(in, 1000 * input_index + static_cast<uint64_t>(set % kHostDraws) + 1);
}

// Hands the caching allocator's idle blocks back after a benchmark, so one benchmark's
// input sets do not crowd out the next one's.
void release_device_memory() {
  try {
    cuda::release_cached();
  } catch (const std::exception& e) {
    std::cerr << "agilenn-bench: releasing cached GPU memory failed: " << e.what() << "\n";
  }
}

bool skip_without_gpu(benchmark::State& state) {
  const std::string why = gpu_unavailable();
  if (why.empty()) return false;
  state.SkipWithError(why.c_str());
  return true;
}

// The case's op graph on cuda_backend(), recorded per input set and timed by replay.
void run_gpu(benchmark::State& state, const OpCase& c) {
  if (skip_without_gpu(state)) return;
  guarded(state, [&] {
    Backend& be = cuda_backend();
    Graph g;
    std::vector<Value> leaves;
    double set_bytes = 0;
    for (size_t i = 0; i < c.inputs.size(); ++i) {
      leaves.push_back(ops::leaf(g, "x" + std::to_string(i), c.inputs[i].shape, c.inputs[i].dtype));
      set_bytes += input_bytes(c.inputs[i]);
    }
    Value out = c.build(g, leaves);
    set_bytes += 4.0 * static_cast<double>(numel(out.shape()));
    Executor ex(g, compile(g, {out.id()}), be);
    const int sets = sets_for(set_bytes);
    std::vector<Feeds> feeds(static_cast<size_t>(sets));
    std::vector<std::vector<Tensor>> host(c.inputs.size());
    for (size_t i = 0; i < c.inputs.size(); ++i)
      for (int k = 0; k < std::min(sets, kHostDraws); ++k) host[i].push_back(host_input(c.inputs[i], i, k));
    for (int k = 0; k < sets; ++k)
      for (size_t i = 0; i < c.inputs.size(); ++i)
        feeds[static_cast<size_t>(k)]["x" + std::to_string(i)] = be.to_device(host[i][static_cast<size_t>(k % kHostDraws)]);
    // Run every set once (library algorithms and workspaces settle, every output block
    // exists in the caching allocator), then record each: the block a set's warm-up
    // output frees is the one its recorded run writes, so recording allocates nothing.
    std::vector<std::vector<Tensor>> outs(static_cast<size_t>(sets));
    for (int k = 0; k < sets; ++k) outs[static_cast<size_t>(k)] = ex.run(feeds[static_cast<size_t>(k)]);
    be.synchronize();
    std::vector<std::unique_ptr<RecordedWork>> recorded;
    std::string not_recorded = "the backend cannot record";
    try {
      for (int k = 0; k < sets; ++k) {
        auto& kept = outs[static_cast<size_t>(k)];
        kept.clear();
        std::unique_ptr<RecordedWork> work = be.record([&] { kept = ex.run(feeds[static_cast<size_t>(k)]); });
        if (!work) break;
        recorded.push_back(std::move(work));
      }
    } catch (const std::exception& e) {  // a kernel that cannot be captured: time it unrecorded
      not_recorded = e.what();
      recorded.clear();
    }
    double seconds = 0;
    if (static_cast<int>(recorded.size()) == sets) {
      seconds = time_on_gpu(state, sets, [&](int k) { recorded[static_cast<size_t>(k)]->replay(); });
      state.SetLabel(c.label);
    } else {  // the runs include host dispatch
      std::cerr << "agilenn-bench: " << c.label << ": not recorded as a CUDA graph (" << not_recorded << "); timing includes host dispatch\n";
      seconds = time_on_gpu(state, sets, [&](int k) { outs[static_cast<size_t>(k)] = ex.run(feeds[static_cast<size_t>(k)]); });
      state.SetLabel(c.label + " (not recorded: includes host dispatch)");
    }
    set_rate_counters(state, c.work, gpu_ceilings(), seconds);
  });
  release_device_memory();
}

// ---- cuDNN's grouped convolution, the library path the depthwise kernel replaces

class CudnnGroupedConv {
 public:
  // The depthwise pass of `d` as a cuDNN convolution with group count C, NHWC float32,
  // FMA math (no TF32, as the kernel). cuDNN pads symmetrically: "same" padding with the
  // extra row/column after is given as a correspondingly larger input.
  CudnnGroupedConv(const DepthwiseShape& d, ConvPass pass) : pass_(pass) {
    const Shape x{d.n, d.h, d.w, d.c}, filter{3, 3, 1, d.c};
    const Attrs attrs = conv_attrs(x, filter, d.stride, d.c);
    const std::vector<int64_t>& pads = attrs.ints("pads");  // top, bottom, left, right
    const ConvGeometry g = conv_geometry(x, filter, attrs.ints("stride"), attrs.ints("dilation"), pads, d.c);
    const int64_t h = g.h + std::max<int64_t>(0, pads[1] - pads[0]), w = g.w + std::max<int64_t>(0, pads[3] - pads[2]);
    x_shape_ = {g.n, h, w, g.c};
    y_shape_ = {g.n, g.oh, g.ow, g.cout};
    w_shape_ = filter;
    try {
      AGILENN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&xd_));
      AGILENN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&yd_));
      AGILENN_CUDNN_CHECK(cudnnCreateFilterDescriptor(&wd_));
      AGILENN_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&cd_));
      AGILENN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(xd_, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, as_int(g.n),
                                                     as_int(g.c), as_int(h), as_int(w)));
      AGILENN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(yd_, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, as_int(g.n),
                                                     as_int(g.cout), as_int(g.oh), as_int(g.ow)));
      AGILENN_CUDNN_CHECK(cudnnSetFilter4dDescriptor(wd_, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, as_int(g.cout), 1,
                                                     as_int(g.kh), as_int(g.kw)));
      AGILENN_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(cd_, as_int(g.pad_top), as_int(g.pad_left),
                                                          as_int(g.stride_h), as_int(g.stride_w), as_int(g.dil_h),
                                                          as_int(g.dil_w), CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
      AGILENN_CUDNN_CHECK(cudnnSetConvolutionGroupCount(cd_, as_int(g.c)));
      AGILENN_CUDNN_CHECK(cudnnSetConvolutionMathType(cd_, CUDNN_FMA_MATH));
      int on = 0, oc = 0, oh = 0, ow = 0;
      AGILENN_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(cd_, xd_, wd_, &on, &oc, &oh, &ow));
      AGILENN_CHECK(on == g.n && oc == g.cout && oh == g.oh && ow == g.ow,
                    "cuDNN grouped conv: output " << on << "x" << oc << "x" << oh << "x" << ow << ", expected "
                                                  << shape_str(y_shape_));
      choose_algorithm();
    } catch (...) {
      destroy();
      throw;
    }
  }
  ~CudnnGroupedConv() { destroy(); }
  CudnnGroupedConv(const CudnnGroupedConv&) = delete;
  CudnnGroupedConv& operator=(const CudnnGroupedConv&) = delete;

  // Shapes of the two operands and the result of this pass.
  std::array<Shape, 3> shapes() const {
    switch (pass_) {
      case ConvPass::forward: return {x_shape_, w_shape_, y_shape_};
      case ConvPass::data_grad: return {y_shape_, w_shape_, x_shape_};
      case ConvPass::filter_grad: break;
    }
    return {x_shape_, y_shape_, w_shape_};
  }

  void run(const Tensor& a, const Tensor& b, Tensor& out) const {
    const float one = 1.0f, zero = 0.0f;
    cudnnHandle_t h = cuda::cudnn();
    switch (pass_) {
      case ConvPass::forward:
        AGILENN_CUDNN_CHECK(cudnnConvolutionForward(h, &one, xd_, a.raw(), wd_, b.raw(), cd_, fwd_, workspace_, ws_bytes_,
                                                    &zero, yd_, out.raw()));
        return;
      case ConvPass::data_grad:
        AGILENN_CUDNN_CHECK(cudnnConvolutionBackwardData(h, &one, wd_, b.raw(), yd_, a.raw(), cd_, bwd_data_, workspace_,
                                                         ws_bytes_, &zero, xd_, out.raw()));
        return;
      case ConvPass::filter_grad:
        AGILENN_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &one, xd_, a.raw(), yd_, b.raw(), cd_, bwd_filter_,
                                                           workspace_, ws_bytes_, &zero, wd_, out.raw()));
        return;
    }
  }
  int algorithm() const {
    return pass_ == ConvPass::forward ? static_cast<int>(fwd_)
                                      : pass_ == ConvPass::data_grad ? static_cast<int>(bwd_data_)
                                                                     : static_cast<int>(bwd_filter_);
  }

 private:
  static int as_int(int64_t v) { return static_cast<int>(v); }

  // cuDNN's own timed search; the fastest algorithm that ran, and its workspace.
  void choose_algorithm() {
    cudnnHandle_t h = cuda::cudnn();
    int returned = 0;
    size_t bytes = 0;
    bool found = false;
    switch (pass_) {
      case ConvPass::forward: {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        AGILENN_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithm(h, xd_, wd_, cd_, yd_, CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
                                                                 &returned, perf));
        for (int i = 0; i < returned && !found; ++i)
          if (perf[i].status == CUDNN_STATUS_SUCCESS) fwd_ = perf[i].algo, bytes = perf[i].memory, found = true;
        break;
      }
      case ConvPass::data_grad: {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        AGILENN_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithm(
            h, wd_, yd_, cd_, xd_, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &returned, perf));
        for (int i = 0; i < returned && !found; ++i)
          if (perf[i].status == CUDNN_STATUS_SUCCESS) bwd_data_ = perf[i].algo, bytes = perf[i].memory, found = true;
        break;
      }
      case ConvPass::filter_grad: {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        AGILENN_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithm(
            h, xd_, yd_, cd_, wd_, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &returned, perf));
        for (int i = 0; i < returned && !found; ++i)
          if (perf[i].status == CUDNN_STATUS_SUCCESS) bwd_filter_ = perf[i].algo, bytes = perf[i].memory, found = true;
        break;
      }
    }
    AGILENN_CHECK(found, "cuDNN grouped conv (" << pass_name(pass_) << "): no algorithm ran");
    ws_bytes_ = bytes;
    if (bytes > 0) {
      ws_storage_ = cuda::allocate_cached(bytes);
      workspace_ = ws_storage_->data();
    }
  }

  void destroy() {
    // Destruction only releases descriptors; a failure here has nothing left to report to.
    if (cd_) (void)cudnnDestroyConvolutionDescriptor(cd_);
    if (wd_) (void)cudnnDestroyFilterDescriptor(wd_);
    if (yd_) (void)cudnnDestroyTensorDescriptor(yd_);
    if (xd_) (void)cudnnDestroyTensorDescriptor(xd_);
    cd_ = nullptr, wd_ = nullptr, yd_ = nullptr, xd_ = nullptr;
  }

  ConvPass pass_;
  Shape x_shape_, y_shape_, w_shape_;
  cudnnTensorDescriptor_t xd_ = nullptr, yd_ = nullptr;
  cudnnFilterDescriptor_t wd_ = nullptr;
  cudnnConvolutionDescriptor_t cd_ = nullptr;
  cudnnConvolutionFwdAlgo_t fwd_{};
  cudnnConvolutionBwdDataAlgo_t bwd_data_{};
  cudnnConvolutionBwdFilterAlgo_t bwd_filter_{};
  std::shared_ptr<Storage> ws_storage_;
  void* workspace_ = nullptr;
  size_t ws_bytes_ = 0;
};

void run_cudnn_grouped(benchmark::State& state, const DepthwiseShape& d, ConvPass pass) {
  if (skip_without_gpu(state)) return;
  guarded(state, [&] {
    Backend& be = cuda_backend();
    const CudnnGroupedConv conv(d, pass);
    const std::array<Shape, 3> s = conv.shapes();
    const double set_bytes = 4.0 * static_cast<double>(numel(s[0]) + numel(s[1]) + numel(s[2]));
    const int sets = sets_for(set_bytes);
    std::array<std::vector<Tensor>, 2> host;
    for (size_t i = 0; i < 2; ++i)
      for (int k = 0; k < std::min(sets, kHostDraws); ++k) host[i].push_back(host_input({s[i]}, i, k));
    std::vector<std::array<Tensor, 3>> t(static_cast<size_t>(sets));
    for (int k = 0; k < sets; ++k) {
      auto& set = t[static_cast<size_t>(k)];
      for (size_t i = 0; i < 2; ++i) set[i] = be.to_device(host[i][static_cast<size_t>(k % kHostDraws)]);
      set[2] = Tensor(s[2], DType::f32, be.allocate(4 * static_cast<size_t>(numel(s[2]))));
    }
    const double seconds = time_on_gpu(state, sets, [&](int k) {
      auto& set = t[static_cast<size_t>(k)];
      conv.run(set[0], set[1], set[2]);
    });
    const OpCase kernel = depthwise_case(d, pass, false);
    set_rate_counters(state, kernel.work, gpu_ceilings(), seconds);
    state.SetLabel(kernel.label + " algo " + std::to_string(conv.algorithm()));
  });
  release_device_memory();
}

void register_gpu_kernels() {
  auto configure = [](benchmark::internal::Benchmark* b) {
    b->UseManualTime()->Iterations(kIterations)->Unit(benchmark::kMicrosecond);
  };
  for (const DepthwiseShape& d : depthwise_shapes(true))
    for (ConvPass pass : {ConvPass::forward, ConvPass::data_grad, ConvPass::filter_grad}) {
      const std::string base = "BM_Depthwise/cuda/" + d.name + "/" + pass_name(pass) + "/";
      configure(benchmark::RegisterBenchmark((base + "kernel").c_str(), [d, pass](benchmark::State& s) {
        run_gpu(s, depthwise_case(d, pass, false));
      }));
      configure(benchmark::RegisterBenchmark((base + "cudnn_grouped").c_str(), [d, pass](benchmark::State& s) {
        run_cudnn_grouped(s, d, pass);
      }));
    }
  for (const QuantizeShape& q : quantize_shapes(true))
    for (QuantizeImpl impl : {QuantizeImpl::kernel, QuantizeImpl::unfused, QuantizeImpl::reference})
      configure(benchmark::RegisterBenchmark(("BM_Quantize/cuda/" + q.name + "/" + impl_name(impl)).c_str(),
                                             [q, impl](benchmark::State& s) { run_gpu(s, quantize_case(q, impl)); }));
  for (const AttributionShape& a : attribution_shapes(true))
    for (bool fused : {true, false})
      configure(benchmark::RegisterBenchmark(
          ("BM_AttributionStats/cuda/" + a.name + "/" + (fused ? "kernel" : "unfused")).c_str(),
          [a, fused](benchmark::State& s) { run_gpu(s, attribution_case(a, fused)); }));
  for (const QuantizeShape& q : quantize_shapes(true))
    for (int64_t wrt : {0, 1})
      for (bool fused : {true, false})
        configure(benchmark::RegisterBenchmark(("BM_QuantizeBackward/cuda/" + q.name + "/" + (wrt == 0 ? "dx" : "dc") +
                                                "/" + (fused ? "kernel" : "unfused"))
                                                   .c_str(),
                                               [q, wrt, fused](benchmark::State& s) {
                                                 run_gpu(s, quantize_backward_case(q, wrt, fused));
                                               }));
  for (const AttributionShape& a : attribution_shapes(true))
    for (int64_t wrt : {0, 1})
      for (bool fused : {true, false})
        configure(benchmark::RegisterBenchmark(("BM_AttributionStatsBackward/cuda/" + a.name + "/" +
                                                (wrt == 0 ? "ddelta" : "da") + "/" + (fused ? "kernel" : "unfused"))
                                                   .c_str(),
                                               [a, wrt, fused](benchmark::State& s) {
                                                 run_gpu(s, attribution_backward_case(a, wrt, fused));
                                               }));
  for (const CrossEntropyShape& x : cross_entropy_shapes(true))
    for (bool fused : {true, false})
      configure(benchmark::RegisterBenchmark(
          ("BM_SoftmaxCrossEntropy/cuda/" + x.name + "/" + (fused ? "kernel" : "unfused")).c_str(),
          [x, fused](benchmark::State& s) { run_gpu(s, cross_entropy_case(x, fused)); }));
}

size_t gpu_l2_bytes() {
  int device = 0, l2 = 0;
  AGILENN_CUDA_CHECK(cudaGetDevice(&device));
  AGILENN_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device));
  return static_cast<size_t>(l2);
}

// A 1 GiB device-to-device copy and an 8192³ cuBLAS SGEMM (and TF32), timed with events.
void measure_gpu_ceilings() {
  Ceilings& c = gpu_ceilings();
  const cuda::DeviceInfo info = cuda::device_info(0);
  cudaStream_t stream = cuda::stream();
  Events ev(2);
  auto best_of = [&](int repeats, const std::function<void()>& work) {
    work();  // warm-up
    double best = 1e30;
    for (int r = 0; r < repeats; ++r) {
      AGILENN_CUDA_CHECK(cudaEventRecord(ev[0], stream));
      work();
      AGILENN_CUDA_CHECK(cudaEventRecord(ev[1], stream));
      AGILENN_CUDA_CHECK(cudaEventSynchronize(ev[1]));
      best = std::min(best, ev.seconds(0, 1));
    }
    return best;
  };

  {  // bandwidth: a 1 GiB device-to-device copy, read + write counted
    const size_t bytes = size_t{1} << 30;
    auto src = cuda::allocate(bytes), dst = cuda::allocate(bytes);
    AGILENN_CUDA_CHECK(cudaMemsetAsync(src->data(), 0x3c, bytes, stream));
    const double s = best_of(10, [&] {
      AGILENN_CUDA_CHECK(cudaMemcpyAsync(dst->data(), src->data(), bytes, cudaMemcpyDeviceToDevice, stream));
    });
    c.bytes_per_s = 2.0 * static_cast<double>(bytes) / s;
  }

  {  // arithmetic: an 8192³ SGEMM on our own cuBLAS handle (the backend's keeps its mode)
    const int n = 8192;
    const size_t count = static_cast<size_t>(n) * static_cast<size_t>(n), bytes = count * sizeof(float);
    auto a = cuda::allocate(bytes), b = cuda::allocate(bytes), out = cuda::allocate(bytes);
    const int64_t tile = int64_t{1} << 20;
    const Tensor ta = random_tensor({tile}, 11), tb = random_tensor({tile}, 12);
    for (size_t off = 0; off < count; off += static_cast<size_t>(tile)) {
      AGILENN_CUDA_CHECK(cudaMemcpy(static_cast<float*>(a->data()) + off, ta.raw(), ta.nbytes(), cudaMemcpyHostToDevice));
      AGILENN_CUDA_CHECK(cudaMemcpy(static_cast<float*>(b->data()) + off, tb.raw(), tb.nbytes(), cudaMemcpyHostToDevice));
    }
    cublasHandle_t h = nullptr;
    AGILENN_CUBLAS_CHECK(cublasCreate(&h));
    try {
      AGILENN_CUBLAS_CHECK(cublasSetStream(h, stream));
      const float one = 1.0f, zero = 0.0f;
      auto sgemm = [&] {
        AGILENN_CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, static_cast<const float*>(a->data()),
                                         n, static_cast<const float*>(b->data()), n, &zero,
                                         static_cast<float*>(out->data()), n));
      };
      const double flops = 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
      AGILENN_CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));  // float32 FMA: no TF32 for SGEMM
      c.flops = flops / best_of(5, sgemm);
      AGILENN_CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH));
      c.tf32_flops = flops / best_of(5, sgemm);
    } catch (...) {
      (void)cublasDestroy(h);
      throw;
    }
    AGILENN_CUBLAS_CHECK(cublasDestroy(h));
  }
  std::ostringstream how;
  how << info.name << " (sm_" << info.compute_major << info.compute_minor << ", L2 " << (gpu_l2_bytes() >> 20)
      << " MiB, cuDNN " << cudnnGetVersion() << "): cudaMemcpy D2D of 1 GiB (read + write counted), cuBLAS SGEMM "
      << "8192^3 (f32; TF32 separately); best of runs, timed with events";
  c.how = how.str();
}

// At load: the GPU benchmarks, and agilenn-bench's GPU ceilings come from here.
const bool registered = (register_gpu_kernels(), gpu_ceilings_probe() = measure_gpu_ceilings, true);

}  // namespace
}  // namespace agilenn::bench
