// The SVG chart of a BenchReport: one horizontal bar per row that ran,
// latency (p50, with a whisker to p90) on the left and accuracy against
// FP32 (output SQNR) on the right, Kvant and ONNX Runtime in two colours.
#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tools/bench/report.h"

namespace kvant::tools::bench {
namespace {

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

constexpr int kLabelWidth = 210, kPanelWidth = 320, kGap = 40, kRowHeight = 24, kTop = 62;
constexpr const char* kKvantColour = "#2f6db5";
constexpr const char* kPeerColour = "#e0902f";

// Bars of one panel; `value` < 0 draws nothing for that row.
struct Panel {
  std::string title;
  int x = 0;
  double max_value = 1;
};

}  // namespace

std::string RenderSvg(const BenchReport& r) {
  std::vector<const BenchRow*> rows;
  for (const BenchRow& row : r.rows) {
    if (row.skipped.empty()) rows.push_back(&row);
  }
  const int width = kLabelWidth + 2 * kPanelWidth + kGap + 110;  // room for the last label
  const int height = kTop + static_cast<int>(rows.size()) * kRowHeight + 46;
  // The latency axis ends at the largest p90, or at four times the median
  // p50 when one row is far slower (its bar is then cut and says so).
  double max_ms = 0, max_db = 0;
  std::vector<double> p50s;
  for (const BenchRow* row : rows) {
    max_ms = std::max(max_ms, row->latency.p90_ms);
    p50s.push_back(row->latency.p50_ms);
    if (row->accuracy && std::isfinite(row->accuracy->sqnr_db)) max_db = std::max(max_db, row->accuracy->sqnr_db);
  }
  if (!p50s.empty()) {
    std::nth_element(p50s.begin(), p50s.begin() + p50s.size() / 2, p50s.end());
    max_ms = std::min(max_ms, 4 * p50s[p50s.size() / 2]);
  }
  max_ms = max_ms > 0 ? max_ms * 1.1 : 1;
  max_db = std::max(10.0, max_db * 1.1);
  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
      "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
      "<text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">%s</text>\n"
      "<text x=\"10\" y=\"38\" fill=\"#555\">%s, batch %d</text>\n",
      width, height, width, height, Escape(absl::StrCat("kvant bench: ", r.model)), Escape(r.hardware), r.batch);
  const Panel latency{"latency p50 (ms), whisker to p90; shorter is faster", kLabelWidth, max_ms};
  const Panel accuracy{"output SQNR vs FP32 (dB); longer is closer", kLabelWidth + kPanelWidth + kGap, max_db};
  for (const Panel* p : {&latency, &accuracy}) {
    absl::StrAppend(&svg, absl::StrFormat("<text x=\"%d\" y=\"%d\" fill=\"#333\">%s</text>\n", p->x, kTop - 8,
                                          Escape(p->title)));
    absl::StrAppend(&svg, absl::StrFormat("<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#999\"/>\n", p->x,
                                          kTop - 2, p->x, kTop + static_cast<int>(rows.size()) * kRowHeight));
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    const BenchRow& row = *rows[i];
    const int y = kTop + static_cast<int>(i) * kRowHeight;
    const char* colour = row.runtime == "kvant" ? kKvantColour : kPeerColour;
    absl::StrAppend(&svg, absl::StrFormat("<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>\n", kLabelWidth - 8,
                                          y + 16, Escape(absl::StrFormat("%s %s, %d thr", row.runtime, row.precision,
                                                                         row.threads))));
    const bool cut = row.latency.p50_ms > latency.max_value;
    const double w = kPanelWidth * std::min(1.0, row.latency.p50_ms / latency.max_value);
    const double w90 = kPanelWidth * std::min(1.0, row.latency.p90_ms / latency.max_value);
    absl::StrAppend(&svg, absl::StrFormat(
        "<rect class=\"latency\" x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"><title>%s</title></rect>\n"
        "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#333\"/>\n"
        "<text x=\"%.1f\" y=\"%d\" fill=\"#222\">%.3g ms%s%s</text>\n",
        latency.x, y + 4, w, kRowHeight - 8, colour,
        Escape(absl::StrFormat("p50 %.3f ms, p90 %.3f ms, p99 %.3f ms", row.latency.p50_ms, row.latency.p90_ms,
                               row.latency.p99_ms)),
        latency.x + w, y + kRowHeight / 2, latency.x + w90, y + kRowHeight / 2,
        latency.x + (cut ? kPanelWidth - 150.0 : w90 + 4), y + 16, row.latency.p50_ms,
        row.speedup > 0 ? absl::StrFormat(" (%.2fx)", row.speedup).c_str() : "", cut ? ", off scale" : ""));
    std::string label = "FP32 reference";
    double db = 0;
    if (row.accuracy) {
      const bool exact = std::isinf(row.accuracy->sqnr_db);
      db = exact ? accuracy.max_value : row.accuracy->sqnr_db;
      label = exact ? "identical" : absl::StrFormat("%.1f dB", db);
      if (row.accuracy->top1_agreement >= 0) {
        absl::StrAppend(&label, absl::StrFormat(", top-1 %.1f%%", 100 * row.accuracy->top1_agreement));
      }
    }
    const double wa = kPanelWidth * std::clamp(db, 0.0, accuracy.max_value) / accuracy.max_value;
    absl::StrAppend(&svg, absl::StrFormat(
        "<rect class=\"accuracy\" x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\" fill-opacity=\"0.75\"/>\n"
        "<text x=\"%.1f\" y=\"%d\" fill=\"#222\">%s</text>\n",
        accuracy.x, y + 4, wa, kRowHeight - 8, colour, accuracy.x + std::min(wa, kPanelWidth - 60.0) + 4, y + 16,
        Escape(label)));
  }
  const int legend_y = height - 16;
  absl::StrAppend(&svg, absl::StrFormat(
      "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">Kvant</text>\n"
      "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">ONNX Runtime</text>\n",
      kLabelWidth, legend_y - 10, kKvantColour, kLabelWidth + 16, legend_y, kLabelWidth + 80, legend_y - 10,
      kPeerColour, kLabelWidth + 96, legend_y));
  absl::StrAppend(&svg, "</svg>\n");
  return svg;
}

}  // namespace kvant::tools::bench
