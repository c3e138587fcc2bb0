// The progress line every long-running command shows: its text, and when it is printed
// (a fake clock drives the intervals).
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

#include "engine/core/progress.h"

namespace agilenn {
namespace {

Progress::Clock::time_point g_now;
Progress::Clock::time_point fake_now() { return g_now; }
void advance(double seconds) {
  g_now += std::chrono::duration_cast<Progress::Clock::duration>(std::chrono::duration<double>(seconds));
}

TEST(Progress, LineSaysDoneTotalRateTimeLeftAndTheCallersFields) {
  std::ostringstream out;
  Progress p(out, Progress::Mode::lines, "epoch 1/6", 1000, 64, "images");
  p.set_clock_for_tests(&fake_now);
  advance(10);
  EXPECT_EQ(p.line(250, "loss 0.5"), "epoch 1/6 250/1000 (25%)  1600 images/s  ETA 0m30s  loss 0.5");
  EXPECT_EQ(p.line(0, ""), "epoch 1/6 0/1000 (0%)");
  EXPECT_EQ(Progress::duration(3725), "1h02m05s");
  EXPECT_EQ(Progress::duration(65), "1m05s");
}

TEST(Progress, ResumedWorkCountsOnlyThisProcessInTheRate) {
  std::ostringstream out;
  Progress p(out, Progress::Mode::lines, "epoch 3/6", 100, 1, "steps");
  p.set_clock_for_tests(&fake_now);
  p.skip(60);
  advance(10);
  EXPECT_EQ(p.line(80, ""), "epoch 3/6 80/100 (80%)  2.0 steps/s  ETA 0m10s");
}

// In a log: a plain line at every 10% of the work (or after 30 s without one), never a
// control character.
TEST(Progress, InALogPrintsPlainLinesAtEveryTenthOrEveryThirtySeconds) {
  std::ostringstream out;
  {
    Progress p(out, Progress::Mode::lines, "work", 100);
    p.set_clock_for_tests(&fake_now);
    for (int done = 1; done <= 100; ++done) {
      advance(0.01);
      p.update(done, "x");
    }
  }
  const std::string text = out.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 10) << text;
  EXPECT_EQ(text.find('\r'), std::string::npos);
  EXPECT_EQ(text.find('\033'), std::string::npos);

  std::ostringstream slow;
  Progress p(slow, Progress::Mode::lines, "slow", 1000);
  p.set_clock_for_tests(&fake_now);
  for (int done = 1; done <= 5; ++done) {  // 0.5% of the work per 31 s
    advance(31);
    p.update(done);
  }
  const std::string lines = slow.str();
  EXPECT_EQ(std::count(lines.begin(), lines.end(), '\n'), 5) << lines;
}

// On a terminal: one line redrawn in place, four times a second at most, and cleared.
TEST(Progress, OnATerminalRedrawsOneLineAtMostFourTimesASecondAndClearsIt) {
  std::ostringstream out;
  {
    Progress p(out, Progress::Mode::terminal, "work", 1000);
    p.set_clock_for_tests(&fake_now);
    for (int done = 1; done <= 100; ++done) {  // 100 updates over 2 s
      advance(0.02);
      p.update(done, "loss 1");
    }
  }
  const std::string text = out.str();
  EXPECT_EQ(text.find('\n'), std::string::npos);
  const auto redraws = std::count(text.begin(), text.end(), '\r');
  EXPECT_GE(redraws, 7);   // 2 s at 4 a second, plus the clearing
  EXPECT_LE(redraws, 11);
  EXPECT_EQ(text.substr(text.rfind('\r') - 1, 1), " ");  // the last write blanks the line
}

}  // namespace
}  // namespace agilenn
