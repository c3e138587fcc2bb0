// Progress of long work (an epoch's steps, an evaluation, an export), the same in every
// binary. On a terminal: one line rewritten in place, at most a few times a second. In a
// log or a pipe: plain lines at a steady interval (every 10% of the work or every 30 s,
// whichever comes first), no control characters. The line says done/total, the rate in
// the caller's unit, the time left, and the caller's own fields (loss, accuracy, ...).
#pragma once

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>

namespace agilenn {

class Progress {
 public:
  enum class Mode { terminal, lines };
  using Clock = std::chrono::steady_clock;

  // `unit_per_item`: e.g. images per step, for a rate in images/s.
  Progress(std::ostream& out, Mode mode, std::string label, int64_t total, double unit_per_item = 1,
           std::string unit = "items");
  ~Progress();  // a terminal line left unfinished is cleared
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Terminal mode when `out` is standard output or standard error and that is a terminal.
  static Mode mode_for(const std::ostream& out);

  // `done` of `total` items now; `fields` follow the rate and the time left. Prints only
  // when the mode's interval has passed (or the work is done, in lines mode).
  void update(int64_t done, const std::string& fields = "");
  // Clears the terminal line, so the caller's next line starts clean.
  void clear();
  // Items already done before this process started (a resumed run): counted as done,
  // not in the rate.
  void skip(int64_t already_done) { skipped_ = already_done; }

  // The text of one progress line (for tests): "label 300/1000 (30%)  512 images/s  ETA 0m01s  fields".
  std::string line(int64_t done, const std::string& fields) const;
  // Seconds as "1h02m03s" / "2m03s".
  static std::string duration(double seconds);

  // The intervals, so tests can use their own clock.
  void set_clock_for_tests(Clock::time_point (*now)()) { now_ = now; start_ = now_(); last_print_ = start_; }

 private:
  std::ostream& out_;
  Mode mode_;
  std::string label_, unit_;
  int64_t total_;
  double unit_per_item_;
  Clock::time_point (*now_)() = &Clock::now;
  Clock::time_point start_, last_print_;
  int64_t last_printed_done_ = -1;
  int64_t skipped_ = 0;
  size_t shown_width_ = 0;  // terminal: characters of the line on screen
};

}  // namespace agilenn
