// The derivative table (derivatives.cpp) enters the op registry from here, so that the IR
// does not depend on autodiff: grad() registers it before its first sweep.
#pragma once

namespace agilenn {

// Adds every op's vjp rule, zero-derivative mark and missing-vjp reason to
// OpRegistry::instance(); once per process, later calls do nothing. Thread-safe.
void register_derivatives();

}  // namespace agilenn
