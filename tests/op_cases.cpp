// The op table of the gradient checker: for every registry op, cases with odd sizes
// (and, for convolutions, strides, dilations, groups and paddings), each with a naive
// float64 reference of its forward value where one is short to write. One file per op
// family: tests/op_cases_<family>.cpp.
#include "tests/op_cases_util.h"

namespace agilenn::testing {

const std::vector<OpCase>& op_cases() {
  static const std::vector<OpCase> table = [] {
    cases::Cases cs;
    cases::add_elementwise_cases(cs);
    cases::add_reductions_cases(cs);
    cases::add_layout_cases(cs);
    cases::add_convolution_cases(cs);
    cases::add_losses_cases(cs);
    cases::add_layers_cases(cs);
    cases::add_agilenn_cases(cs);
    return cs;
  }();
  return table;
}

}  // namespace agilenn::testing
