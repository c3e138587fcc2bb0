#include <gtest/gtest.h>

#include "engine/core/error.h"
#include "engine/core/tensor.h"
#include "engine/ir/shape_util.h"

namespace agilenn {
namespace {

TEST(Tensor, ZerosHaveShapeDtypeAndAlignedStorage) {
  Tensor t = Tensor::zeros({2, 3, 5}, DType::f32);
  EXPECT_EQ(t.numel(), 30);
  EXPECT_EQ(t.nbytes(), 120u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % 64, 0u);
  for (double v : t.to_vector()) EXPECT_EQ(v, 0.0);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor base = Tensor::zeros({8}, DType::f64);
  Tensor view({2, 2}, DType::f64, base.storage(), 4 * sizeof(double));
  view.set_item(3, 7.5);
  EXPECT_EQ(base.item(7), 7.5);
  EXPECT_EQ(base.storage().use_count(), 2);
}

TEST(Tensor, ViewPastTheStorageIsRefused) {
  Tensor base = Tensor::zeros({16}, DType::f32);  // exactly one 64-byte allocation
  EXPECT_NO_THROW(Tensor({16}, DType::f32, base.storage()));
  EXPECT_THROW(Tensor({17}, DType::f32, base.storage()), Error);
  EXPECT_THROW(Tensor({16}, DType::f32, base.storage(), 4), Error);
}

TEST(Tensor, DtypeConversionRoundsTowardZeroForIntegers) {
  Tensor t = Tensor::from_vector({3}, {1.75, -2.5, 3.0}, DType::f64);
  Tensor i = t.to(DType::i32);
  EXPECT_EQ(i.dtype(), DType::i32);
  EXPECT_EQ(i.to_vector(), (std::vector<double>{1, -2, 3}));
  EXPECT_EQ(t.to(DType::f32).item(0), 1.75);
}

TEST(Tensor, FromVectorChecksCount) {
  EXPECT_THROW(Tensor::from_vector({2, 2}, {1, 2, 3}, DType::f32), Error);
}

TEST(ShapeUtil, BroadcastFollowsNumpy) {
  EXPECT_EQ(broadcast_shapes({2, 1, 3}, {4, 1}), (Shape{2, 4, 3}));
  EXPECT_EQ(broadcast_shapes({}, {3}), (Shape{3}));
  EXPECT_THROW(broadcast_shapes({2, 3}, {4, 3}), Error);
}

TEST(ShapeUtil, SamePaddingFollowsTensorFlow) {
  // out = ceil(in/stride); total = max((out-1)*stride + (k-1)*d + 1 - in, 0); extra goes after.
  EXPECT_EQ(same_padding(96, 3, 3, 1), (std::array<int64_t, 2>{0, 0}));  // 96/3 = 32, fits exactly
  EXPECT_EQ(same_padding(32, 3, 1, 1), (std::array<int64_t, 2>{1, 1}));
  EXPECT_EQ(same_padding(32, 3, 2, 1), (std::array<int64_t, 2>{0, 1}));  // odd total: 1 after
  EXPECT_EQ(same_padding(7, 3, 1, 2), (std::array<int64_t, 2>{2, 2}));
  EXPECT_EQ(same_padding(6, 3, 2, 1), (std::array<int64_t, 2>{0, 1}));
}

TEST(ShapeUtil, ConvGeometryValidatesChannels) {
  EXPECT_THROW(conv_geometry({1, 5, 5, 3}, {3, 3, 2, 4}, {1, 1}, {1, 1}, {0, 0, 0, 0}, 1), Error);
  const ConvGeometry g = conv_geometry({2, 7, 6, 4}, {3, 3, 2, 6}, {2, 2}, {1, 1}, {0, 1, 0, 1}, 2);
  EXPECT_EQ(g.oh, 3);  // (7 + 0 + 1 - 3) / 2 + 1
  EXPECT_EQ(g.ow, 3);  // (6 + 0 + 1 - 3) / 2 + 1
  EXPECT_EQ(g.cout_g(), 3);
}

}  // namespace
}  // namespace agilenn
