// Small helpers shared by the test files.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>

#include "engine/core/error.h"
#include "engine/runtime/backend.h"

namespace agilenn::testing {

// Values drawn uniformly from [lo, hi), one per element in order.
inline Tensor random_tensor(const Shape& s, DType dtype, std::mt19937_64& rng, double lo = -1, double hi = 1) {
  std::uniform_real_distribution<double> u(lo, hi);
  Tensor t = Tensor::zeros(s, dtype);
  for (int64_t i = 0; i < t.numel(); ++i) t.set_item(i, u(rng));
  return t;
}
inline Tensor random_tensor(const Shape& s, DType dtype, uint64_t seed, double lo = -1, double hi = 1) {
  std::mt19937_64 rng(seed);
  return random_tensor(s, dtype, rng, lo, hi);
}

// A fresh directory under the system's temporary one, removed with everything in it.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name)
      : path_(std::filesystem::temp_directory_path() / ("agilenn-test-" + name + "-" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  operator const std::filesystem::path&() const { return path_; }
  std::filesystem::path operator/(const std::string& child) const { return path_ / child; }

 private:
  std::filesystem::path path_;
};

// Whether python3 imports `modules` (e.g. "tensorboard, PIL"): the tests that read our
// files back with reference readers skip without them (tools/setup.sh installs them).
inline bool have_python(const std::string& modules) {
  return std::system(("python3 -c 'import " + modules + "' >/dev/null 2>&1").c_str()) == 0;
}

// Runs `command` in a shell; its exit status, with what it printed (stdout and stderr) in
// *output when given.
inline int run_command(const std::string& command, std::string* output = nullptr) {
  const std::filesystem::path log =
      std::filesystem::temp_directory_path() / ("agilenn-command-" + std::to_string(::getpid()) + ".log");
  const int status = std::system((command + " > " + log.string() + " 2>&1").c_str());
  if (output) {
    std::ifstream in(log);
    *output = std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  std::filesystem::remove(log);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The message of the agilenn::Error that f throws, or "" when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// The CPU backend under another name, to override one behaviour in a test (a planted
// defect, a GPU-like recording) and keep the rest.
class CpuForwardingBackend : public Backend {
 public:
  std::string name() const override { return "cpu-forwarding"; }
  Device device() const override { return Device::cpu; }
  std::shared_ptr<Storage> allocate(size_t bytes) override { return cpu_backend().allocate(bytes); }
  const KernelTable& kernels() const override { return cpu_backend().kernels(); }
  Tensor to_device(const Tensor& host) override { return cpu_backend().to_device(host); }
  Tensor to_host(const Tensor& t) override { return cpu_backend().to_host(t); }
  Tensor copy(const Tensor& t) override { return cpu_backend().copy(t); }
  void copy_into(const Tensor& src, Tensor& dst) override { cpu_backend().copy_into(src, dst); }
  void sgdw_update(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> velocities,
                   const SgdwHyper& hyper, const UpdateGuard& guard) override {
    cpu_backend().sgdw_update(params, grads, velocities, hyper, guard);
  }
  void adam_update(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> m, std::span<Tensor> v,
                   const AdamHyper& hyper, const UpdateGuard& guard) override {
    cpu_backend().adam_update(params, grads, m, v, hyper, guard);
  }
};

}  // namespace agilenn::testing
