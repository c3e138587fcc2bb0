// One error type for the engine; messages name the op, tensor, file or flag at fault.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace agilenn {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace agilenn

#define AGILENN_THROW(msg)                 \
  do {                                     \
    std::ostringstream agilenn_os_;        \
    agilenn_os_ << msg;                    \
    throw ::agilenn::Error(agilenn_os_.str()); \
  } while (0)

#define AGILENN_CHECK(cond, msg) \
  do {                           \
    if (!(cond)) AGILENN_THROW(msg); \
  } while (0)
