// The device half on a microcontroller: an export's C99 device half (--target c99) built with
// Debian's arm-none-eabi-gcc for a Cortex-M7 and run under QEMU's mps2-an500 board
// (tools/run-mcu.py) gives the host build's local logits, codes and streams byte for byte, in
// the STM32F746's 1 MB of flash and 320 KB of RAM (the link's memory map).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/export_fixtures.h"
#include "tests/test_util.h"

namespace agilenn::testing {
namespace {

using ::testing::HasSubstr;

TEST(Mcu, TheC99DeviceHalfRunsOnACortexM7UnderQemuAsOnTheHost) {
  if (!std::filesystem::exists(kFmnistDir))
    GTEST_SKIP() << kFmnistDir << " is missing: tools/setup.sh installs dataset-fashion-mnist";
  for (const char* tool : {"arm-none-eabi-gcc", "qemu-system-arm"})
    if (run_command(std::string("command -v ") + tool + " >/dev/null", nullptr) != 0)
      GTEST_SKIP() << tool << " is missing: tools/setup.sh installs gcc-arm-none-eabi and qemu-system-arm";
  if (!have_python("numpy, onnxruntime, ai_edge_litert"))
    GTEST_SKIP() << "python3 lacks numpy, onnxruntime or ai_edge_litert (tools/setup.sh --tests installs them)";
  const ScratchDir d("mcu");
  const std::string ckpt = trained(d, "fashion-mnist", 640);
  const std::string out = (d / "split").string();
  std::string log;
  ASSERT_EQ(run_command(AGILENN_EXPORT_BINARY " " + ckpt + " --out " + out +
                            " --calibration 640 --test-limit 64 --batch-size 64 --target c99",
                        &log),
            0)
      << log;
  EXPECT_EQ(run_command("python3 " AGILENN_TOOLS_DIR "/run-mcu.py " + out + " --images 3", &log), 0) << log;
  EXPECT_THAT(log, HasSubstr("3 of 3 images equal to the host build"));
  EXPECT_THAT(log, HasSubstr("instructions per image"));
}

}  // namespace
}  // namespace agilenn::testing
