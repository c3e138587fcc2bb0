#include "bench/busy_neighbour.h"

#include <fcntl.h>
#include <sched.h>
#include <spawn.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "engine/core/error.h"

extern char** environ;

namespace agilenn::bench {
namespace {

constexpr const char* kChildFlag = "--busy_neighbour_child";
constexpr int kReportFd = 3;  // the child's end of the pipe: 'S' once it spins, 'E' if it cannot be pinned

double monotonic_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace

std::vector<int> allowed_cpus() {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof(mask), &mask) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &mask)) cpus.push_back(c);
  return cpus;
}

double load_average_1min() {
  FILE* f = std::fopen("/proc/loadavg", "r");
  if (!f) return -1;
  double load = -1;
  if (std::fscanf(f, "%lf", &load) != 1) load = -1;
  std::fclose(f);
  return load;
}

BusyNeighbour::BusyNeighbour(int cpu, double limit_s) {
  AGILENN_CHECK(cpu >= 0 && cpu < CPU_SETSIZE, "busy neighbour: no CPU " << cpu);
  AGILENN_CHECK(limit_s > 0, "busy neighbour: the time limit must be positive");
  int fds[2];
  AGILENN_CHECK(pipe2(fds, O_CLOEXEC) == 0, "busy neighbour: pipe: " << std::strerror(errno));
  if (fds[1] == kReportFd) {  // dup2 onto itself would keep close-on-exec
    const int moved = fcntl(fds[1], F_DUPFD_CLOEXEC, kReportFd + 1);
    close(fds[1]);
    fds[1] = moved;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], kReportFd);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::string cpu_arg = std::to_string(cpu), limit_arg = std::to_string(limit_s),
              parent_arg = std::to_string(getpid()), flag = kChildFlag, name = "agilenn-bench";
  char* args[] = {name.data(), flag.data(), cpu_arg.data(), limit_arg.data(), parent_arg.data(), nullptr};
  started_ = monotonic_seconds();
  pid_t pid = -1;
  // posix_spawn (vfork-like): the benchmark's memory is neither copied nor write-protected.
  const int err = posix_spawn(&pid, "/proc/self/exe", &actions, &attr, args, environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(fds[1]);
  if (err != 0) {
    close(fds[0]);
    AGILENN_THROW("busy neighbour: posix_spawn: " << std::strerror(err));
  }
  pid_ = pid;
  char c = 0;
  ssize_t got;
  do got = read(fds[0], &c, 1);
  while (got < 0 && errno == EINTR);
  close(fds[0]);
  if (got != 1 || c != 'S') {
    stop();
    AGILENN_THROW("busy neighbour: the child could not be pinned to CPU " << cpu);
  }
}

bool is_busy_neighbour_child(int argc, char** argv) { return argc >= 2 && std::strcmp(argv[1], kChildFlag) == 0; }

int busy_neighbour_child_main(int argc, char** argv) {
  if (argc != 5) return 2;
  const int cpu = std::atoi(argv[2]);
  const double limit_s = std::atof(argv[3]);
  const auto parent = static_cast<pid_t>(std::atol(argv[4]));
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) return 0;  // the benchmark died before prctl took effect
  const auto cpu_limit = static_cast<rlim_t>(std::ceil(limit_s)) + 1;
  const rlimit rl{cpu_limit, cpu_limit + 1};
  setrlimit(RLIMIT_CPU, &rl);
  cpu_set_t mask;
  CPU_ZERO(&mask);
  if (cpu >= 0 && cpu < CPU_SETSIZE) CPU_SET(cpu, &mask);
  const bool pinned = cpu >= 0 && cpu < CPU_SETSIZE && sched_setaffinity(0, sizeof(mask), &mask) == 0;
  const char report = pinned ? 'S' : 'E';
  (void)!write(kReportFd, &report, 1);
  close(kReportFd);
  if (!pinned) return 1;
  const double deadline = monotonic_seconds() + limit_s;
  volatile uint64_t sink = 0;
  for (;;) {
    for (int i = 0; i < 1 << 20; ++i) sink = sink + 1;
    if (monotonic_seconds() > deadline) return 0;
  }
}

BusyNeighbour::~BusyNeighbour() { stop(); }

bool BusyNeighbour::spinning() {
  if (pid_ < 0) return false;
  siginfo_t info{};
  // WNOWAIT: leaves an exited child to stop(), which reads its CPU time when reaping it.
  if (waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0) return false;
  return info.si_pid == 0;
}

double BusyNeighbour::stop() {
  if (pid_ < 0) return share_;
  kill(pid_, SIGKILL);
  rusage ru{};
  int status = 0;
  pid_t r;
  do r = wait4(pid_, &status, 0, &ru);
  while (r < 0 && errno == EINTR);
  const double wall = monotonic_seconds() - started_;
  const double cpu = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                     static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
  share_ = r == pid_ && wall > 0 ? cpu / wall : 0;
  pid_ = -1;
  return share_;
}

}  // namespace agilenn::bench
