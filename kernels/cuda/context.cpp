#include "kernels/cuda/context.h"

#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/dist/communicator.h"
#include "kernels/cuda/device.h"

namespace agilenn::cuda {
namespace {

constexpr size_t kBlasWorkspaceBytes = size_t{32} << 20;

struct Handles {
  cudaStream_t compute = nullptr, upload = nullptr;
  void* blas_workspace = nullptr;
  cublasHandle_t blas = nullptr;
  cudnnHandle_t dnn = nullptr;
  FaultSlot* fault = nullptr;
  Handles() {
    std::string why;
    const int devices = device_count(&why);
    AGILENN_CHECK(devices > 0, "CUDA backend: " << why);
    // One rank per GPU: a data-parallel job's rank takes its node's GPU of its local rank,
    // unless the launcher shows each rank only its own (srun --gpus-per-task=1, or a
    // CUDA_VISIBLE_DEVICES per rank).
    const dist::Communicator& world = dist::world();
    if (world.size() > 1 && devices > 1) {
      AGILENN_CHECK(world.local_rank() < devices, "CUDA backend: " << dist::rank_prefix() << "local rank "
                                                   << world.local_rank() << " but this node shows it " << devices
                                                   << " GPUs; start at most one rank per GPU");
      AGILENN_CUDA_CHECK(cudaSetDevice(world.local_rank()));
    }
    AGILENN_CUDA_CHECK(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking));
    AGILENN_CUDA_CHECK(cudaStreamCreateWithFlags(&upload, cudaStreamNonBlocking));
    AGILENN_CUBLAS_CHECK(cublasCreate(&blas));
    AGILENN_CUBLAS_CHECK(cublasSetStream(blas, compute));
    // A workspace of its own keeps cuBLAS from allocating one while a graph is recorded.
    AGILENN_CUDA_CHECK(cudaMalloc(&blas_workspace, kBlasWorkspaceBytes));
    AGILENN_CUBLAS_CHECK(cublasSetWorkspace(blas, blas_workspace, kBlasWorkspaceBytes));
    AGILENN_CUDNN_CHECK(cudnnCreate(&dnn));
    AGILENN_CUDNN_CHECK(cudnnSetStream(dnn, compute));
    // The index-fault slot, made here so no kernel can first reach it while a graph is captured.
    AGILENN_CUDA_CHECK(cudaMalloc(&fault, sizeof(FaultSlot)));
    const FaultSlot empty;
    AGILENN_CUDA_CHECK(cudaMemcpy(fault, &empty, sizeof(FaultSlot), cudaMemcpyHostToDevice));
  }
  // Handles live until process exit: destroying them after the driver has shut down
  // at exit fails, and the OS reclaims everything anyway.
};

Handles& handles() {
  static Handles* h = new Handles();
  return *h;
}

bool g_tf32 = false;

// Size classes: multiples of 512 bytes up to 1 MiB, then of 2 MiB (the driver's page
// for large allocations). Powers of two would round a 3.0 GiB arena up to 4 GiB.
size_t size_class(size_t bytes) {
  constexpr size_t kSmall = 512, kLarge = size_t{2} << 20;
  if (bytes <= (1u << 20)) return (bytes + kSmall - 1) / kSmall * kSmall;
  return (bytes + kLarge - 1) / kLarge * kLarge;
}

// A cached block is reused for a request of its class or of a class up to 1/8 smaller, so
// a step that asks for slightly different sizes still hits the cache without letting a
// large block serve a small request.
bool fits(size_t block, size_t wanted) { return block >= wanted && block - wanted <= wanted / 8; }

class CachingAllocator {
 public:
  void* get(size_t bytes) {
    const size_t c = size_class(bytes ? bytes : 1);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.lower_bound(c);
    if (it != free_.end() && fits(it->first, c)) {
      void* p = it->second;
      free_.erase(it);
      return p;
    }
    void* p = nullptr;
    cudaError_t status = cudaMalloc(&p, c);
    if (status == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      release_locked();
      status = cudaMalloc(&p, c);
    }
    AGILENN_CUDA_CHECK(status);
    size_of_[p] = c;
    held_ += c;
    return p;
  }
  void put(void* p) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.emplace(size_of_.at(p), p);
  }
  size_t held() {
    std::lock_guard<std::mutex> lock(mu_);
    return held_;
  }
  void release() {
    std::lock_guard<std::mutex> lock(mu_);
    release_locked();
  }

 private:
  void release_locked() {
    // Blocks may still be read by queued kernels: wait for them before freeing.
    if (!free_.empty()) AGILENN_CUDA_CHECK(cudaDeviceSynchronize());
    for (auto& [c, p] : free_) {
      AGILENN_CUDA_CHECK(cudaFree(p));
      size_of_.erase(p);
      held_ -= c;
    }
    free_.clear();
  }
  std::mutex mu_;
  std::multimap<size_t, void*> free_;
  std::unordered_map<void*, size_t> size_of_;
  size_t held_ = 0;
};

CachingAllocator& allocator() {
  static CachingAllocator* a = new CachingAllocator();
  return *a;
}

void return_to_cache(void* p) { allocator().put(p); }
void free_pinned(void* p) { (void)cudaFreeHost(p); }

struct Workspace {
  void* data = nullptr;
  size_t bytes = 0;
  // Outgrown buffers stay allocated: a recorded CUDA graph may still address them.
  std::vector<void*> retired;
};

}  // namespace

cudaStream_t stream() { return handles().compute; }
cudaStream_t copy_stream() { return handles().upload; }
cublasHandle_t cublas() { return handles().blas; }
cudnnHandle_t cudnn() { return handles().dnn; }

bool capturing() {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  AGILENN_CUDA_CHECK(cudaStreamIsCapturing(stream(), &status));
  return status == cudaStreamCaptureStatusActive;
}

void* workspace(size_t bytes) {
  static Workspace ws;
  if (bytes <= ws.bytes) return ws.data;
  AGILENN_CHECK(!capturing(), "CUDA workspace must grow to " << bytes << " bytes while a CUDA graph is being captured; "
                                                             << "run the step once before capturing");
  if (ws.data) ws.retired.push_back(ws.data);
  AGILENN_CUDA_CHECK(cudaMalloc(&ws.data, bytes));
  ws.bytes = bytes;
  return ws.data;
}

void set_tf32(bool on) { g_tf32 = on; }
bool tf32() { return g_tf32; }

namespace {
bool g_nondeterministic = false;
std::mutex g_notes_mu;
std::vector<std::string> g_notes;
}  // namespace

void set_nondeterministic_allowed(bool on) { g_nondeterministic = on; }
bool nondeterministic_allowed() { return g_nondeterministic; }

void note(const std::string& message) {
  std::lock_guard<std::mutex> lock(g_notes_mu);
  g_notes.push_back(message);
}

std::vector<std::string> take_notes() {
  std::lock_guard<std::mutex> lock(g_notes_mu);
  return std::exchange(g_notes, {});
}

std::shared_ptr<Storage> allocate_cached(size_t bytes) {
  (void)handles();  // fail with the reason when there is no GPU
  return std::make_shared<Storage>(allocator().get(bytes), bytes ? bytes : 1, Device::cuda, &return_to_cache);
}

size_t cached_bytes() { return allocator().held(); }
void release_cached() { allocator().release(); }

const FaultSlot* fault_slot() { return handles().fault; }

FaultSite fault_site(const Node& node) {
  return {handles().fault, reinterpret_cast<unsigned long long>(&node), static_cast<long long>(node.id)};
}

std::optional<IndexFault> take_fault() {
  FaultSlot* slot = handles().fault;
  FaultSlot got;
  AGILENN_CUDA_CHECK(cudaMemcpyAsync(&got, slot, sizeof(FaultSlot), cudaMemcpyDeviceToHost, stream()));
  AGILENN_CUDA_CHECK(cudaStreamSynchronize(stream()));
  if (got.node == 0) return std::nullopt;
  const FaultSlot empty;
  AGILENN_CUDA_CHECK(cudaMemcpyAsync(slot, &empty, sizeof(FaultSlot), cudaMemcpyHostToDevice, stream()));
  AGILENN_CUDA_CHECK(cudaStreamSynchronize(stream()));
  IndexFault f;
  f.node = reinterpret_cast<const Node*>(got.node);
  f.node_id = static_cast<NodeId>(got.node_id);
  f.position = static_cast<int64_t>(got.key >> 32);
  f.value = static_cast<int32_t>(static_cast<uint32_t>(got.key & 0xffffffffull));
  f.bound = got.bound;
  return f;
}

std::shared_ptr<Storage> allocate_pinned(size_t bytes) {
  void* p = nullptr;
  AGILENN_CUDA_CHECK(cudaMallocHost(&p, bytes ? bytes : 1));
  return std::make_shared<Storage>(p, bytes ? bytes : 1, Device::cpu, &free_pinned);
}

}  // namespace agilenn::cuda
