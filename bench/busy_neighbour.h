// A busy neighbour for the contention benchmarks: a child process that spins on one CPU,
// as another user's CPU-bound job would, while the benchmark times a step beside it.
#pragma once

#include <sys/types.h>

#include <vector>

namespace agilenn::bench {

// The CPUs this process may run on (its affinity mask), in increasing order.
std::vector<int> allowed_cpus();

// The 1-minute load average (/proc/loadavg), or -1 when unreadable.
double load_average_1min();

// Starts a child process that spins on `cpu` alone (sched_setaffinity) and returns once
// it spins. The child is this executable run again (posix_spawn of /proc/self/exe with
// --busy_neighbour_child, which main() hands to busy_neighbour_child_main): unlike a
// fork, it shares and write-protects none of the benchmark's memory. It can never
// outlive its bounds: it exits by itself after `limit_s` seconds of wall time, the
// kernel kills it after limit_s + 1 s of CPU time (RLIMIT_CPU) and when the benchmark's
// thread that started it ends (PR_SET_PDEATHSIG); stop() or the destructor kill and reap
// it (also when the benchmark throws). Throws if the child cannot be started or pinned.
// main() of the child: true when argv asks for it, and its body (returns the exit code).
bool is_busy_neighbour_child(int argc, char** argv);
int busy_neighbour_child_main(int argc, char** argv);

class BusyNeighbour {
 public:
  BusyNeighbour(int cpu, double limit_s);
  ~BusyNeighbour();
  BusyNeighbour(const BusyNeighbour&) = delete;
  BusyNeighbour& operator=(const BusyNeighbour&) = delete;

  // True while the child still spins (it has not reached its own time limit).
  bool spinning();
  // Kills and reaps the child; returns the fraction of one CPU it got over its life
  // (its user + system time over its wall time). Idempotent.
  double stop();

 private:
  pid_t pid_ = -1;
  double started_ = 0;
  double share_ = 0;
};

}  // namespace agilenn::bench
