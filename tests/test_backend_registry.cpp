// Backends by name (engine/runtime/backend_registry.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/runtime/backend_registry.h"
#include "tests/test_util.h"

namespace agilenn {
namespace {

using ::testing::HasSubstr;
using testing::error_of;

TEST(BackendRegistry, CpuIsAlwaysThereFirstAndRefusesCudaOptions) {
  ASSERT_FALSE(backend_names().empty());
  EXPECT_EQ(backend_names().front(), "cpu");
  std::string description;
  EXPECT_EQ(&open_backend("cpu", {}, &description), &cpu_backend());
  EXPECT_THAT(description, HasSubstr("threads"));
  EXPECT_THAT(error_of([] { open_backend("cpu", {.tf32 = true}); }), HasSubstr("TF32"));
  EXPECT_THAT(error_of([] { open_backend("cpu", {.nondeterministic = true}); }), HasSubstr("non-deterministic"));
}

TEST(BackendRegistry, AnUnknownNameListsTheBackendsOfThisBuild) {
  const std::string e = error_of([] { open_backend("tpu"); });
  EXPECT_THAT(e, HasSubstr("no backend 'tpu'"));
  EXPECT_THAT(e, HasSubstr("cpu"));
  EXPECT_THAT(error_of([] { register_backend({"cpu", nullptr, nullptr}); }), HasSubstr("registered twice"));
}

}  // namespace
}  // namespace agilenn
