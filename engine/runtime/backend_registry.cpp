#include "engine/runtime/backend_registry.h"

#include <mutex>
#include <optional>
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

namespace {

// The provider `name`, or null and in `why` the build's backends.
std::optional<BackendProvider> find_provider(const std::string& name, std::string& why) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::ostringstream known;
  for (const BackendProvider& p : r.providers) {
    if (p.name == name) return p;
    known << (known.tellp() > 0 ? ", " : "") << p.name;
  }
  why = "no backend '" + name + "' in this build (it has: " + known.str() + ")" +
        (name == "cuda" ? "; it was built without CUDA (no nvcc at configure time, or -DAGILENN_CUDA=OFF)" : "");
  return std::nullopt;
}

}  // namespace

std::string backend_unavailable(const std::string& name) {
  std::string why;
  const std::optional<BackendProvider> provider = find_provider(name, why);
  return provider ? provider->unavailable() : why;
}

Backend& open_backend(const std::string& name, const BackendOptions& options, std::string* description) {
  std::string missing;
  const std::optional<BackendProvider> provider = find_provider(name, missing);
  AGILENN_CHECK(provider, missing);
  const std::string why = provider->unavailable();
  AGILENN_CHECK(why.empty(), "backend '" << name << "' cannot run here: " << why);
  std::string line;
  Backend& b = provider->open(options, line);
  if (description) *description = line;
  return b;
}

}  // namespace agilenn
