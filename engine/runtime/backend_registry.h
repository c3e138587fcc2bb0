// Backends by name, so that the binaries name none: "cpu" is always present; "cuda"
// registers itself when the CUDA backend is linked in (kernels/cuda, linked whole so that
// its registration is kept).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "engine/runtime/backend.h"

namespace agilenn {

// Settings a backend may offer; asking one that does not offer a setting is an error.
struct BackendOptions {
  bool tf32 = false;              // TF32 tensor-core math for float32 GEMMs and convolutions (cuda)
  bool nondeterministic = false;  // convolution algorithms whose sums are not ordered (cuda)
};

struct BackendProvider {
  std::string name;
  // "" when the backend can run on this machine, else why not (no device, no driver).
  std::function<std::string()> unavailable;
  // Applies the options (throws naming one it does not offer) and returns the backend;
  // `description` receives the device it runs on, in one line.
  std::function<Backend&(const BackendOptions&, std::string& description)> open;
};

// Throws when a provider of that name is already registered.
void register_backend(BackendProvider provider);

// Registered names, "cpu" first.
std::vector<std::string> backend_names();

// "" when the backend `name` is in this build and can run on this machine, else why not.
std::string backend_unavailable(const std::string& name);

// The backend `name`, set up with `options`. Throws naming the backend and the reason when
// it is not in this build or cannot run here.
Backend& open_backend(const std::string& name, const BackendOptions& options = {}, std::string* description = nullptr);

}  // namespace agilenn
