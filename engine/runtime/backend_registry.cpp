#include "engine/runtime/backend_registry.h"

#include <mutex>
#include <sstream>

#include "engine/core/error.h"
#include "engine/runtime/threads.h"

namespace agilenn {
namespace {

struct Registry {
  std::mutex mu;
  std::vector<BackendProvider> providers;
};

Registry& registry() {
  static Registry* r = [] {
    auto* reg = new Registry;  // never destroyed: static registrations may outlive any order of exit
    reg->providers.push_back(
        {"cpu", [] { return std::string(); },
         [](const BackendOptions& o, std::string& description) -> Backend& {
           AGILENN_CHECK(!o.tf32, "backend 'cpu' has no TF32 math (a cuda option)");
           AGILENN_CHECK(!o.nondeterministic, "backend 'cpu' has no non-deterministic algorithms (a cuda option)");
           description = "cpu, " + std::to_string(threads::count()) + " threads";
           return cpu_backend();
         }});
    return reg;
  }();
  return *r;
}

}  // namespace

void register_backend(BackendProvider provider) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  for (const BackendProvider& p : r.providers)
    AGILENN_CHECK(p.name != provider.name, "backend '" << provider.name << "' registered twice");
  r.providers.push_back(std::move(provider));
}

std::vector<std::string> backend_names() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<std::string> names;
  for (const BackendProvider& p : r.providers) names.push_back(p.name);
  return names;
}

Backend& open_backend(const std::string& name, const BackendOptions& options, std::string* description) {
  BackendProvider provider;
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    std::ostringstream known;
    for (const BackendProvider& p : r.providers) {
      if (p.name == name) provider = p;
      known << (known.tellp() > 0 ? ", " : "") << p.name;
    }
    AGILENN_CHECK(!provider.name.empty(),
                  "no backend '" << name << "' in this build (it has: " << known.str() << ")"
                                 << (name == "cuda" ? "; it was built without CUDA (no nvcc at configure time, or "
                                                      "-DAGILENN_CUDA=OFF)"
                                                    : ""));
  }
  const std::string why = provider.unavailable();
  AGILENN_CHECK(why.empty(), "backend '" << name << "' cannot run here: " << why);
  std::string line;
  Backend& b = provider.open(options, line);
  if (description) *description = line;
  return b;
}

}  // namespace agilenn
