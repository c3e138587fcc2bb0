#include "engine/core/progress.h"

#include <unistd.h>

#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>

namespace agilenn {
namespace {

constexpr double kTerminalInterval = 0.25;  // seconds between redraws: 4 a second at most
constexpr double kLinesInterval = 30;       // seconds between plain lines at most
constexpr int64_t kLinesSteps = 10;         // and a line every 10% of the work

}  // namespace

Progress::Progress(std::ostream& out, Mode mode, std::string label, int64_t total, double unit_per_item,
                   std::string unit)
    : out_(out),
      mode_(mode),
      label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      unit_per_item_(unit_per_item),
      start_(now_()),
      last_print_(start_) {}

Progress::~Progress() { clear(); }

Progress::Mode Progress::mode_for(const std::ostream& out) {
  if (&out == &std::cout) return isatty(STDOUT_FILENO) ? Mode::terminal : Mode::lines;
  if (&out == &std::cerr || &out == &std::clog) return isatty(STDERR_FILENO) ? Mode::terminal : Mode::lines;
  return Mode::lines;
}

std::string Progress::duration(double seconds) {
  const auto s = static_cast<int64_t>(seconds < 0 ? 0 : seconds);
  std::ostringstream os;
  if (s >= 3600) os << s / 3600 << "h" << std::setw(2) << std::setfill('0');
  os << (s % 3600) / 60 << "m" << std::setw(2) << std::setfill('0') << s % 60 << "s";
  return os.str();
}

std::string Progress::line(int64_t done, const std::string& fields) const {
  const double secs = std::chrono::duration<double>(now_() - start_).count();
  std::ostringstream os;
  os << label_ << " " << done << "/" << total_;
  if (total_ > 0) os << " (" << done * 100 / total_ << "%)";
  if (done > skipped_ && secs > 0) {
    const double rate = static_cast<double>(done - skipped_) / secs;
    os << "  " << std::fixed << std::setprecision(rate * unit_per_item_ < 100 ? 1 : 0) << rate * unit_per_item_ << " "
       << unit_ << "/s  ETA " << duration(static_cast<double>(total_ - done) / rate);
  }
  if (!fields.empty()) os << "  " << fields;
  return os.str();
}

void Progress::update(int64_t done, const std::string& fields) {
  const Clock::time_point now = now_();
  const double since = std::chrono::duration<double>(now - last_print_).count();
  if (mode_ == Mode::terminal) {
    if (since < kTerminalInterval && done < total_) return;
    const std::string text = line(done, fields);
    out_ << "\r" << text;
    if (text.size() < shown_width_) out_ << std::string(shown_width_ - text.size(), ' ');
    out_ << std::flush;
    shown_width_ = text.size();
  } else {
    const int64_t step = total_ > 0 ? (total_ + kLinesSteps - 1) / kLinesSteps : 1;
    const bool milestone = last_printed_done_ < 0 ? done >= step : done / step > last_printed_done_ / step;
    if (done == last_printed_done_ || (!milestone && since < kLinesInterval)) return;
    out_ << line(done, fields) << std::endl;
    last_printed_done_ = done;
  }
  last_print_ = now;
}

void Progress::clear() {
  if (mode_ != Mode::terminal || shown_width_ == 0) return;
  out_ << "\r" << std::string(shown_width_, ' ') << "\r" << std::flush;
  shown_width_ = 0;
}

}  // namespace agilenn
