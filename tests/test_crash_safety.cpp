// Nothing a user trained is lost: agilenn-train killed with SIGKILL at random moments (and
// right while it writes a checkpoint) and resumed each time ends bit-equal to a run never
// interrupted, and no kill leaves an unloadable checkpoint; a full disk stops a run with a
// clear error and leaves the previous checkpoint as it was.
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/io/checkpoint.h"
#include "tests/process_util.h"

namespace agilenn {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using testing::start;
using testing::tensors_of;
using testing::text_of;
using testing::wait_for;

fs::path scratch(const std::string& name) { return testing::scratch("crash", name); }

// A small synthetic reference-net run: 3 steps an epoch, a checkpoint (latest and maybe
// best) at each of 6 epoch ends.
std::vector<std::string> run_args(const fs::path& out) {
  return {AGILENN_TRAIN_BINARY, "reference", "--dataset",  "synthetic", "--epochs", "6", "--train-limit", "48",
          "--test-limit",       "40",        "--batch-size", "16",      "--seed",   "3", "--resume",      "--out",
          out.string()};
}

// Whether process `pid` is writing a checkpoint: its temporary file exists.
bool writing_a_checkpoint(const fs::path& dir, pid_t pid) {
  const std::string mark = ".tmp-" + std::to_string(pid);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string().ends_with(mark)) return true;
  return false;
}

TEST(CrashSafety, KilledAtRandomAndResumedEndsBitEqualToAnUninterruptedRun) {
  const fs::path d = scratch("kill");
  const auto t0 = Clock::now();
  ASSERT_EQ(wait_for(start(run_args(d / "straight"), d / "straight.log")), 0) << text_of(d / "straight.log");
  const double run_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();

  const fs::path out = d / "killed";
  fs::create_directories(out);
  std::mt19937 rng(20261130);
  int kills = 0, during_writes = 0;
  for (int attempt = 0; kills < 20 && attempt < 400; ++attempt) {
    const pid_t pid = start(run_args(out), d / "killed.log");
    ASSERT_GT(pid, 0) << "fork failed";
    // Half the kills at a random moment of a run's length; the rest as soon as this process
    // writes a checkpoint (its temporary file exists), which it does before a run's length.
    const bool at_write = attempt % 2 == 1;
    const double share = at_write ? 1.5 : std::uniform_real_distribution<>(0.05, 1.0)(rng);
    const auto deadline = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(share * run_ms * 1000));
    bool writing = false;
    while (Clock::now() < deadline && !(at_write && (writing = writing_a_checkpoint(out, pid))))
      std::this_thread::sleep_for(std::chrono::microseconds(at_write ? 50 : 1000));
    ::kill(pid, SIGKILL);
    const int code = wait_for(pid);
    if (code == 128 + SIGKILL) {
      ++kills, during_writes += writing;
    } else {
      // It finished before the kill: start the run over, so later kills land in it.
      ASSERT_EQ(code, 0) << text_of(d / "killed.log");
      fs::remove_all(out);
      fs::create_directories(out);
    }
    for (const char* name : {"latest.safetensors", "best.safetensors"}) {
      if (fs::exists(out / name)) {
        EXPECT_NO_THROW(io::load_checkpoint((out / name).string())) << name << " after kill " << kills;
      }
    }
  }
  const pid_t last = start(run_args(out), d / "killed.log");
  ASSERT_GT(last, 0) << "fork failed";
  ASSERT_EQ(wait_for(last), 0) << text_of(d / "killed.log");
  EXPECT_GE(kills, 20);
  EXPECT_GT(during_writes, 0);
  std::cout << "[          ] " << kills << " kills, " << during_writes << " while a checkpoint was being written\n";
  for (const char* name : {"latest.safetensors", "best.safetensors"})
    EXPECT_EQ(tensors_of(out / name), tensors_of(d / "straight" / name)) << name;
  EXPECT_EQ(text_of(out / "metrics.jsonl"), text_of(d / "straight" / "metrics.jsonl"));
  fs::remove_all(d);
}

TEST(CrashSafety, AFullDiskStopsTheRunNamingTheFileAndKeepsThePreviousCheckpoint) {
  const fs::path d = scratch("disk");
  const std::vector<std::string> args = run_args(d / "run");
  std::vector<std::string> first = args;
  first.insert(first.end(), {"--max-steps", "3"});  // the first epoch, then a checkpoint
  ASSERT_EQ(wait_for(start(first, d / "first.log")), 0) << text_of(d / "first.log");
  const fs::path latest = d / "run" / "latest.safetensors", best = d / "run" / "best.safetensors";
  const std::string before = text_of(latest), best_before = text_of(best);
  // Half a checkpoint's size: no checkpoint fits, whatever the lengths of the numbers in its
  // metadata (one byte under the last one's size let a later one with shorter numbers through).
  const pid_t pid = start(args, d / "full.log", std::min(before.size(), best_before.size()) / 2);
  ASSERT_GT(pid, 0) << "fork failed";
  const int code = wait_for(pid);
  const std::string log = text_of(d / "full.log");
  EXPECT_NE(code, 0) << log;
  const size_t at = log.find("agilenn-train: error:");
  ASSERT_NE(at, std::string::npos) << log;
  const std::string error = log.substr(at, log.find('\n', at) - at);
  EXPECT_THAT(error, ::testing::HasSubstr("File too large"));
  EXPECT_THAT(error, ::testing::ContainsRegex("(best|latest)\\.safetensors"));
  EXPECT_EQ(text_of(latest), before);
  EXPECT_EQ(text_of(best), best_before);
  EXPECT_NO_THROW(io::load_checkpoint(latest.string()));
  fs::remove_all(d);
}

}  // namespace
}  // namespace agilenn
