// Symbolic reverse mode: appends vjp nodes to the graph that holds y.
#pragma once

#include <vector>

#include "engine/ir/ops.h"

namespace agilenn {

// d y / d xs as new nodes of y's graph; the result is an ordinary graph that `grad` can
// differentiate again. y must be a scalar unless `seed` (the cotangent, y's shape) is
// given. xs may be any nodes, leaves or intermediates; an x that y does not depend on
// gets zeros. Differentiating through an op without a vjp throws an Error naming it.
std::vector<Value> grad(const Value& y, const std::vector<Value>& xs, const Value& seed = {});

// Partial derivatives of y with respect to xs taken as independent variables: only the
// nodes from `first` on (a subgraph built over xs) are traversed, so paths between the
// xs themselves are not followed. Fused ops differentiate their decompositions this way.
std::vector<Value> partial_grad(const Value& y, const std::vector<Value>& xs, const Value& seed, NodeId first);

}  // namespace agilenn
