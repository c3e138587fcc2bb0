// Small helpers shared by the test files.
#pragma once

#include <functional>
#include <string>

#include "engine/core/error.h"

namespace agilenn::testing {

// The message of the agilenn::Error that f throws, or "" when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace agilenn::testing
