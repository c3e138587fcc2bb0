#include "engine/runtime/threads.h"

#include <cblas.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

namespace agilenn::threads {
namespace {

// How long an idle thread spins before it sleeps, and how long the caller spins waiting
// for chunks other threads hold. Long enough to bridge the gap between two loops of one
// step (a few to tens of microseconds), short enough that a thread with nothing to do
// neither burns a shared core nor stays runnable in the scheduler's eyes.
constexpr int64_t kDefaultSpinMicroseconds = 50;

// Chunks per loop, at most (the claim word holds the count in 16 bits).
constexpr int64_t kMaxChunks = 4096;

using Clock = std::chrono::steady_clock;

long futex(std::atomic<uint32_t>& word, int op, uint32_t value) {
  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), op, value, nullptr, nullptr, 0);
}
void futex_wait(std::atomic<uint32_t>& word, uint32_t expected) { futex(word, FUTEX_WAIT_PRIVATE, expected); }
void futex_wake(std::atomic<uint32_t>& word, int count) {
  futex(word, FUTEX_WAKE_PRIVATE, static_cast<uint32_t>(count));
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// ---- configuration (once)

int positive_int(const char* text) {
  if (!text) return 0;
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  return end != text && v > 0 && v <= 4096 ? static_cast<int>(v) : 0;
}

int affinity_cpus() {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  if (sched_getaffinity(0, sizeof(mask), &mask) != 0) return 0;
  return CPU_COUNT(&mask);
}

// The tightest CPU quota (in CPUs, rounded up) of this process's cgroup and its
// ancestors, cgroup v2 (cpu.max: "QUOTA PERIOD" or "max PERIOD") or v1
// (cpu.cfs_quota_us / cpu.cfs_period_us); 0 when there is none.
int cgroup_quota_cpus() {
  std::vector<std::string> dirs{"/sys/fs/cgroup", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"};
  std::ifstream self("/proc/self/cgroup");
  for (std::string line; std::getline(self, line);) {
    // "0::/path" (v2) or "N:cpu,cpuacct:/path" (v1)
    const size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    std::string path = line.substr(b + 1);
    std::string root;
    if (controllers.empty()) root = "/sys/fs/cgroup";
    else if (("," + controllers + ",").find(",cpu,") != std::string::npos) root = "/sys/fs/cgroup/" + controllers;
    else continue;
    while (!path.empty() && path != "/") {
      dirs.push_back(root + path);
      path.erase(path.rfind('/'));
    }
  }
  double best = 0;
  const auto consider = [&best](double quota, double period) {
    if (quota > 0 && period > 0 && (best == 0 || quota / period < best)) best = quota / period;
  };
  for (const std::string& d : dirs) {
    std::ifstream v2(d + "/cpu.max");
    std::string quota;
    double period = 0;
    if (v2 >> quota >> period) {
      if (quota != "max") consider(std::atof(quota.c_str()), period);
      continue;
    }
    std::ifstream q(d + "/cpu.cfs_quota_us"), p(d + "/cpu.cfs_period_us");
    double qv = 0, pv = 0;
    if (q >> qv && p >> pv) consider(qv, pv);
  }
  if (best <= 0) return 0;
  return std::max(1, static_cast<int>(best + 0.999));
}

// OpenBLAS's runtime kernel choice (a DYNAMIC_ARCH build) in Debian's 0.3.21 maps an Intel
// CPU model it does not know (a new or a virtual one: this project's VMs report family 6,
// model 207) to the Prescott kernels, SSE3 only: its GEMMs then run 3-5× slower
// than with the AVX-512 kernels the CPU has (measured on that VM: 19-31 against 85-144
// GFLOP/s on the convolutions' shapes, one thread). Where that happened and the user set no
// OPENBLAS_CORETYPE, this picks the kernel set from the CPU's features instead, as later
// OpenBLAS versions do, before the first BLAS call; it names what it did.
// gotoblas_dynamic_init/quit are OpenBLAS's own (re)selection entry points, present only in
// DYNAMIC_ARCH builds: weak, so that another BLAS build still links and is left alone.
extern "C" void gotoblas_dynamic_init(void) __attribute__((weak));
extern "C" void gotoblas_dynamic_quit(void) __attribute__((weak));

std::string choose_openblas_kernels() {
  const std::string chosen = openblas_get_corename();
  if (std::getenv("OPENBLAS_CORETYPE") || chosen != "Prescott" || !gotoblas_dynamic_init || !gotoblas_dynamic_quit)
    return "OpenBLAS kernels " + chosen;
  __builtin_cpu_init();
  const char* better = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")
                           ? "SkylakeX"
                       : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? "Haswell"
                                                                                          : nullptr;
  if (!better) return "OpenBLAS kernels " + chosen;
  setenv("OPENBLAS_CORETYPE", better, 0);
  gotoblas_dynamic_quit();
  gotoblas_dynamic_init();
  unsetenv("OPENBLAS_CORETYPE");
  return std::string("OpenBLAS kernels ") + openblas_get_corename() + " (OpenBLAS chose " + chosen +
         ", which this CPU outgrows)";
}

struct Config {
  int threads = 1;
  int64_t spin_us = kDefaultSpinMicroseconds;
  std::string how;
};

Config configure() {
  Config c;
  std::ostringstream how;
  const int cpus = affinity_cpus(), quota = cgroup_quota_cpus();
  if (const int n = positive_int(std::getenv("AGILENN_NUM_THREADS"))) {
    c.threads = n;
    how << "AGILENN_NUM_THREADS=" << n;
  } else if (const int m = positive_int(std::getenv("OMP_NUM_THREADS"))) {
    c.threads = m;
    how << "OMP_NUM_THREADS=" << m;
  } else {
    c.threads = std::max(1, cpus);
    if (quota > 0) c.threads = std::min(c.threads, quota);
    how << "the CPUs this process may use";
  }
  how << "; " << cpus << " CPUs in the affinity mask, cgroup CPU quota ";
  if (quota > 0) how << quota << " CPUs";
  else how << "none";
  if (const char* s = std::getenv("AGILENN_SPIN_US")) {
    c.spin_us = std::clamp<int64_t>(std::atoll(s), 0, 1000000);
    how << "; AGILENN_SPIN_US=" << c.spin_us;
  }
  // OpenBLAS runs on the calling thread: our chunks are its parallelism.
  openblas_set_num_threads(1);
  how << "; " << choose_openblas_kernels();
  c.how = how.str();
  return c;
}

const Config& config() {
  static const Config c = configure();
  return c;
}

thread_local bool inside_job = false;

// Spins until pred() holds or `spin` passes; returns pred().
template <class P>
bool spin_until(Clock::duration spin, P&& pred) {
  if (pred()) return true;
  const Clock::time_point deadline = Clock::now() + spin;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      cpu_relax();
      if (pred()) return true;
    }
    if (Clock::now() >= deadline) return pred();
  }
}

class Pool {
 public:
  Pool() : threads_(config().threads), spin_(std::chrono::microseconds(config().spin_us)) {}

  int threads() const { return threads_; }

  void resize(int n) {
    std::lock_guard<std::mutex> lock(busy_);
    stop_workers();
    threads_ = n > 0 ? n : config().threads;
  }

  void run(int64_t n, int64_t chunks, void (*fn)(const void*, int64_t, int64_t), const void* ctx) {
    chunks = std::clamp<int64_t>(chunks, 1, std::min(n, kMaxChunks));
    if (chunks == 1 || threads_ == 1 || inside_job) return serial(n, chunks, fn, ctx);
    std::unique_lock<std::mutex> lock(busy_, std::try_to_lock);
    if (!lock.owns_lock()) return serial(n, chunks, fn, ctx);  // another thread's loop holds the pool
    start_workers();
    job_fn_ = fn;
    job_ctx_ = ctx;
    job_n_ = n;
    error_ = nullptr;
    done_.store(0, std::memory_order_relaxed);
    const uint32_t gen = ++gen_;
    claim_.store(pack(gen, chunks), std::memory_order_release);
    epoch_.store(gen, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) futex_wake(epoch_, INT_MAX);
    inside_job = true;
    work(gen);
    inside_job = false;
    const auto total = static_cast<uint32_t>(chunks);
    if (!spin_until(spin_, [&] { return done_.load(std::memory_order_acquire) == total; })) {
      caller_sleeping_.store(1, std::memory_order_seq_cst);
      for (uint32_t d; (d = done_.load(std::memory_order_seq_cst)) != total;) futex_wait(done_, d);
      caller_sleeping_.store(0, std::memory_order_relaxed);
    }
    if (error_) std::rethrow_exception(error_);
  }

 private:
  // The claim word: generation (32 bits) | chunk count (16) | next unclaimed chunk (16).
  static uint64_t pack(uint32_t gen, int64_t chunks) {
    return static_cast<uint64_t>(gen) << 32 | static_cast<uint64_t>(chunks) << 16;
  }

  static void serial(int64_t n, int64_t chunks, void (*fn)(const void*, int64_t, int64_t), const void* ctx) {
    for (int64_t i = 0; i < chunks; ++i) fn(ctx, n * i / chunks, n * (i + 1) / chunks);
  }

  // Claims and runs chunks of job `gen` until none is left. A claim succeeds only while
  // the word still carries `gen`, so a late thread never takes a chunk of a later job
  // for this one; the job's fields are read only after a successful claim, when the job
  // cannot have ended (its claimed chunk is not done).
  void work(uint32_t gen) {
    uint64_t c = claim_.load(std::memory_order_acquire);
    for (;;) {
      if (static_cast<uint32_t>(c >> 32) != gen) return;
      const int64_t chunks = static_cast<int64_t>((c >> 16) & 0xffff), next = static_cast<int64_t>(c & 0xffff);
      if (next >= chunks) return;
      if (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
      try {
        job_fn_(job_ctx_, job_n_ * next / chunks, job_n_ * (next + 1) / chunks);
      } catch (...) {
        std::lock_guard<std::mutex> g(error_mu_);
        if (!error_) error_ = std::current_exception();
      }
      if (done_.fetch_add(1, std::memory_order_seq_cst) + 1 == static_cast<uint32_t>(chunks) &&
          caller_sleeping_.load(std::memory_order_seq_cst))
        futex_wake(done_, 1);
      c = claim_.load(std::memory_order_acquire);
    }
  }

  void worker(uint32_t seen) {
    inside_job = true;
    for (;;) {
      const auto fresh = [&] {
        return epoch_.load(std::memory_order_acquire) != seen || stop_.load(std::memory_order_relaxed);
      };
      if (!spin_until(spin_, fresh)) {
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        while (epoch_.load(std::memory_order_seq_cst) == seen && !stop_.load(std::memory_order_seq_cst))
          futex_wait(epoch_, seen);
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
      }
      if (stop_.load(std::memory_order_acquire)) return;
      seen = epoch_.load(std::memory_order_acquire);
      work(seen);
    }
  }

  void start_workers() {
    while (static_cast<int>(workers_.size()) < threads_ - 1) {
      const uint32_t seen = gen_;
      workers_.emplace_back([this, seen] { worker(seen); });
    }
  }

  void stop_workers() {
    if (workers_.empty()) return;
    stop_.store(true, std::memory_order_seq_cst);
    epoch_.store(++gen_, std::memory_order_seq_cst);
    futex_wake(epoch_, INT_MAX);
    for (std::thread& t : workers_) t.join();
    workers_.clear();
    stop_.store(false, std::memory_order_seq_cst);
  }

  alignas(64) std::atomic<uint64_t> claim_{0};
  alignas(64) std::atomic<uint32_t> done_{0};
  std::atomic<uint32_t> caller_sleeping_{0};
  alignas(64) std::atomic<uint32_t> epoch_{0};
  std::atomic<uint32_t> sleepers_{0};
  std::atomic<bool> stop_{false};

  alignas(64) void (*job_fn_)(const void*, int64_t, int64_t) = nullptr;
  const void* job_ctx_ = nullptr;
  int64_t job_n_ = 0;
  std::exception_ptr error_;
  std::mutex error_mu_;

  std::mutex busy_;  // one loop at a time; held by the calling thread while it runs
  uint32_t gen_ = 0;
  int threads_;
  Clock::duration spin_;
  std::vector<std::thread> workers_;
};

// Never destroyed: its workers sleep on a futex when idle and end with the process, so
// no loop can meet a pool torn down by static destruction (a fork's child, which has no
// workers, still runs every chunk on its calling thread).
Pool& pool() {
  static Pool* p = new Pool;
  return *p;
}

}  // namespace

int count() { return pool().threads(); }

void set_count(int n) { pool().resize(n); }

std::string describe() {
  std::ostringstream s;
  s << count() << (count() == 1 ? " thread" : " threads") << " (" << config().how << "; idle spin "
    << config().spin_us << " us)";
  return s.str();
}

void run_chunks(int64_t n, int64_t chunks, void (*fn)(const void*, int64_t, int64_t), const void* ctx) {
  if (n <= 0) return;
  pool().run(n, chunks, fn, ctx);
}

}  // namespace agilenn::threads
