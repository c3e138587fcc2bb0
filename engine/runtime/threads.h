// The CPU backend's threads: how many, and how a loop is spread over them. Configured
// once, on first use; every parallel CPU kernel goes through parallel_for.
//
// Why the engine has its own pool instead of OpenMP's: this project's machines are small
// (two cores) and shared, and a training step is hundreds of short parallel loops. With
// libgomp, one other CPU-bound process on one of two cores cut the tiny preset's step to
// 17% of its solo throughput, for three reasons: every `schedule(static)` loop waited at
// its closing barrier for the thread that shared its core with the other process; idle
// threads spun at barriers for up to ~3 ms (libgomp's default spin count) burning the
// CPU share that thread then lacked when it had work; and the wait policy that helps
// (OMP_WAIT_POLICY=passive, GOMP_SPINCOUNT) is read from the environment when libgomp is
// loaded, before any code of ours runs, so a library cannot choose it. Here:
//   - a loop is cut into more chunks than threads and the chunks are claimed one at a
//     time, by the calling thread too: a thread the scheduler has descheduled holds up a
//     loop by at most the one chunk it is running, and one that has not woken yet holds
//     up nothing (the caller runs the chunks itself);
//   - an idle worker spins only briefly (kSpinMicroseconds) before sleeping on a futex,
//     so it neither burns a shared core's time nor looks like a busy task to the
//     scheduler's load balancing, and the caller sleeps too while waiting for a chunk
//     that a descheduled worker holds;
//   - the thread count is the CPUs this process may use (its affinity mask), capped by
//     a cgroup CPU quota (cpu.max, or cpu.cfs_quota_us on cgroup v1); AGILENN_NUM_THREADS
//     (or else OMP_NUM_THREADS, as before) overrides it;
//   - OpenBLAS runs single-threaded inside our chunks (its own pool would compete for the
//     same cores and spins as well).
// Determinism: chunk boundaries depend on the loop's size and the thread count only,
// never on which thread runs a chunk or when, so a loop whose chunks are independent
// (each output element written by one chunk, reductions over fixed blocks combined in
// order afterwards) gives bit-identical results run to run, loaded or not.
#pragma once

#include <cstdint>
#include <string>

namespace agilenn::threads {

// Threads CPU kernels use, the calling thread included (>= 1).
int count();

// Sets the thread count (tests, benchmarks); 0 restores the configured default. Must not
// be called while a parallel_for runs.
void set_count(int n);

// What count() is and where it came from (affinity, quota, environment), for reports.
std::string describe();

// Calls fn(ctx, begin, end) for `chunks` contiguous pieces of [0, n) (piece i is
// [n·i/chunks, n·(i+1)/chunks); chunks is capped at n and at 4096), spread over the
// threads; returns when all are done.
// An exception from a piece is rethrown here (one of them, if several throw; on the
// pool the other pieces still run, on the calling thread alone the rest are skipped).
// A call from inside a piece, or from another thread while the pool is busy, runs its
// pieces in order on the calling thread.
void run_chunks(int64_t n, int64_t chunks, void (*fn)(const void* ctx, int64_t begin, int64_t end), const void* ctx);

template <class F>
void parallel_for(int64_t n, int64_t chunks, const F& body) {
  if (n <= 0) return;
  run_chunks(
      n, chunks, [](const void* c, int64_t begin, int64_t end) { (*static_cast<const F*>(c))(begin, end); }, &body);
}

}  // namespace agilenn::threads
