// Tests that run agilenn's programs as a user would: start them, wait for them, read what
// they wrote.
#pragma once

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "engine/io/checkpoint.h"

namespace agilenn::testing {

// A fresh directory agilenn-<kind>-<name>-<pid> under the temporary directory.
inline std::filesystem::path scratch(const std::string& kind, const std::string& name) {
  const std::filesystem::path d =
      std::filesystem::temp_directory_path() / ("agilenn-" + kind + "-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

// Starts the program with `args`, output to `log`; RLIMIT_FSIZE `fsize` bytes, with SIGXFSZ
// ignored so an oversized write fails with EFBIG instead of killing it.
inline pid_t start(const std::vector<std::string>& args, const std::filesystem::path& log,
                   rlim_t fsize = RLIM_INFINITY) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const std::string out = log.string();
    std::FILE* f = std::freopen(out.c_str(), "a", stdout);
    if (f) ::dup2(::fileno(stdout), 2);
    if (fsize != RLIM_INFINITY) {
      ::signal(SIGXFSZ, SIG_IGN);
      const rlimit limit{fsize, fsize};
      ::setrlimit(RLIMIT_FSIZE, &limit);
    }
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

// The exit code, or 128 + the signal that ended it.
inline int wait_for(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

inline std::map<std::string, std::vector<double>> tensors_of(const std::filesystem::path& file) {
  std::map<std::string, std::vector<double>> out;
  for (const auto& [name, t] : io::load_checkpoint(file.string()).tensors) out[name] = t.to_vector();
  return out;
}

inline std::string text_of(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace agilenn::testing
