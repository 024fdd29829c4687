// Text, Markdown and JSON renderings of a BenchReport. The text table and
// the Markdown table share one list of columns.
#include "tools/bench/report.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace kvant::tools::bench {
namespace {

std::string Mb(int64_t bytes) { return bytes < 0 ? "-" : absl::StrFormat("%.2f", bytes / 1e6); }

std::string Db(const BenchRow& row) {
  if (!row.accuracy) return "ref";
  if (std::isinf(row.accuracy->sqnr_db)) return "exact";
  return absl::StrFormat("%.1f", row.accuracy->sqnr_db);
}

std::string Top1(const BenchRow& row) {
  if (!row.accuracy) return "ref";
  if (row.accuracy->top1_agreement < 0) return "-";
  return absl::StrFormat("%.1f%%", 100 * row.accuracy->top1_agreement);
}

struct Column {
  const char* header;
  bool left;  // left-aligned
  std::string (*cell)(const BenchRow&);
};

const Column kColumns[] = {
    {"runtime", true, [](const BenchRow& r) { return r.runtime; }},
    {"precision", true, [](const BenchRow& r) { return r.precision; }},
    {"thr", false, [](const BenchRow& r) { return absl::StrCat(r.threads); }},
    {"p50 ms", false, [](const BenchRow& r) { return absl::StrFormat("%.3f", r.latency.p50_ms); }},
    {"p90 ms", false, [](const BenchRow& r) { return absl::StrFormat("%.3f", r.latency.p90_ms); }},
    {"p99 ms", false, [](const BenchRow& r) { return absl::StrFormat("%.3f", r.latency.p99_ms); }},
    {"runs", false, [](const BenchRow& r) { return absl::StrCat(r.latency.runs); }},
    {"samples/s", false, [](const BenchRow& r) { return absl::StrFormat("%.1f", r.throughput); }},
    {"vs FP32", false,
     [](const BenchRow& r) { return r.speedup > 0 ? absl::StrFormat("%.2fx", r.speedup) : std::string("-"); }},
    {"vs ORT", false,
     [](const BenchRow& r) { return r.vs_peer > 0 ? absl::StrFormat("%.2fx", r.vs_peer) : std::string("-"); }},
    {"arena MB", false, [](const BenchRow& r) { return Mb(r.arena_bytes); }},
    {"weights MB", false, [](const BenchRow& r) { return Mb(r.weight_bytes); }},
    {"peak RSS MB", false, [](const BenchRow& r) { return Mb(r.peak_rss_bytes); }},
    {"file MB", false, [](const BenchRow& r) { return Mb(r.file_bytes); }},
    {"SQNR dB", false, Db},
    {"cosine", false,
     [](const BenchRow& r) { return r.accuracy ? absl::StrFormat("%.5f", r.accuracy->cosine) : std::string("ref"); }},
    {"top-1 agree", false, Top1},
    {"kernel path", true, [](const BenchRow& r) { return r.kernel_path; }},
};

std::vector<const BenchRow*> RowsRan(const BenchReport& r) {
  std::vector<const BenchRow*> rows;
  for (const BenchRow& row : r.rows) {
    if (row.skipped.empty()) rows.push_back(&row);
  }
  return rows;
}

std::vector<std::string> Skips(const BenchReport& r) {
  std::vector<std::string> lines;
  for (const BenchRow& row : r.rows) {
    if (!row.skipped.empty()) {
      lines.push_back(absl::StrFormat("%s %s, %d thread(s): not run: %s", row.runtime, row.precision, row.threads,
                                      row.skipped));
    }
  }
  return lines;
}

std::string Heading(const BenchReport& r) {
  return absl::StrFormat("%s, batch %d, on %s; inputs: %s%s", r.model, r.batch, r.hardware, r.inputs,
                         r.calibration.empty() ? "" : absl::StrCat("; INT8 calibrated on ", r.calibration));
}

}  // namespace

std::string RenderText(const BenchReport& r) {
  const auto rows = RowsRan(r);
  std::vector<size_t> width;
  for (const Column& c : kColumns) width.push_back(std::string(c.header).size());
  std::vector<std::vector<std::string>> cells;
  for (const BenchRow* row : rows) {
    cells.emplace_back();
    for (size_t i = 0; i < std::size(kColumns); ++i) {
      cells.back().push_back(kColumns[i].cell(*row));
      width[i] = std::max(width[i], cells.back().back().size());
    }
  }
  auto line = [&](auto cell_of) {
    std::string s;
    for (size_t i = 0; i < std::size(kColumns); ++i) {
      const std::string c = cell_of(i);
      const std::string pad(width[i] - c.size(), ' ');
      absl::StrAppend(&s, i ? "  " : "", kColumns[i].left ? c + pad : pad + c);
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s + "\n";
  };
  std::string out = Heading(r) + "\n";
  out += line([&](size_t i) { return std::string(kColumns[i].header); });
  for (const auto& row : cells) out += line([&](size_t i) { return row[i]; });
  for (const std::string& s : Skips(r)) absl::StrAppend(&out, s, "\n");
  for (const std::string& n : r.notes) absl::StrAppend(&out, "note: ", n, "\n");
  for (const BenchRow* row : rows) {
    if (row->profile.empty()) continue;
    std::vector<std::string> shares;
    for (const auto& [p, share] : row->precision_share) shares.push_back(absl::StrFormat("%s %.1f%%", p, 100 * share));
    absl::StrAppend(&out, absl::StrFormat("\nprofile: %s %s, %d thread(s) (time by precision: %s)\n", row->runtime,
                                          row->precision, row->threads, absl::StrJoin(shares, ", ")));
    for (const OpShare& op : row->profile) {
      absl::StrAppend(&out, absl::StrFormat("  %6.1f%% %9.4f ms  %-5s %-44s %s\n", 100 * op.share, op.ms_per_run,
                                            op.precision, op.node, op.kernel));
    }
  }
  return out;
}

std::string RenderMarkdown(const BenchReport& r) {
  std::string out = absl::StrCat("**", Heading(r), "**\n\n|");
  std::string rule = "|";
  for (const Column& c : kColumns) {
    absl::StrAppend(&out, " ", c.header, " |");
    absl::StrAppend(&rule, c.left ? " :-- |" : " --: |");
  }
  absl::StrAppend(&out, "\n", rule, "\n");
  for (const BenchRow* row : RowsRan(r)) {
    absl::StrAppend(&out, "|");
    for (const Column& c : kColumns) absl::StrAppend(&out, " ", c.cell(*row), " |");
    absl::StrAppend(&out, "\n");
  }
  const auto skips = Skips(r);
  if (!skips.empty() || !r.notes.empty()) absl::StrAppend(&out, "\n");
  for (const std::string& s : skips) absl::StrAppend(&out, "- ", s, "\n");
  for (const std::string& n : r.notes) absl::StrAppend(&out, "- ", n, "\n");
  return out;
}

std::string RenderJson(const BenchReport& r) {
  using nlohmann::ordered_json;
  auto number_or_null = [](double v) { return std::isfinite(v) ? ordered_json(v) : ordered_json(nullptr); };
  auto bytes_or_null = [](int64_t v) { return v >= 0 ? ordered_json(v) : ordered_json(nullptr); };
  ordered_json j;
  j["schema"] = "kvant-bench/1";
  j["model"] = r.model;
  j["hardware"] = r.hardware;
  j["inputs"] = r.inputs;
  j["calibration"] = r.calibration;
  j["batch"] = r.batch;
  j["eval_batches"] = r.eval_batches;
  j["notes"] = r.notes;
  j["rows"] = ordered_json::array();
  for (const BenchRow& row : r.rows) {
    ordered_json o;
    o["runtime"] = row.runtime;
    o["precision"] = row.precision;
    o["threads"] = row.threads;
    o["skipped"] = row.skipped.empty() ? ordered_json(nullptr) : ordered_json(row.skipped);
    o["kernel_path"] = row.kernel_path;
    o["model_file"] = row.model_file;
    o["file_bytes"] = bytes_or_null(row.file_bytes);
    o["arena_bytes"] = bytes_or_null(row.arena_bytes);
    o["weight_bytes"] = bytes_or_null(row.weight_bytes);
    o["peak_rss_bytes"] = bytes_or_null(row.peak_rss_bytes);
    o["plan"] = row.int8_steps < 0 ? ordered_json(nullptr)
                                   : ordered_json{{"int8_steps", row.int8_steps},
                                                  {"float_steps", row.float_steps},
                                                  {"bf16_steps", row.bf16_steps},
                                                  {"fp16_steps", row.fp16_steps},
                                                  {"conversions", row.conversions}};
    const LatencyStats& l = row.latency;
    o["latency_ms"] = {{"runs", l.runs},     {"p50", l.p50_ms},   {"p90", l.p90_ms},
                       {"p99", l.p99_ms},    {"min", l.min_ms},   {"mean", l.mean_ms},
                       {"p50_rel_ci95", number_or_null(l.p50_rel_ci)}};
    o["throughput_per_s"] = row.throughput;
    o["speedup_vs_fp32"] = row.speedup > 0 ? ordered_json(row.speedup) : ordered_json(nullptr);
    o["speedup_vs_onnxruntime"] = row.vs_peer > 0 ? ordered_json(row.vs_peer) : ordered_json(nullptr);
    if (row.accuracy) {
      const Accuracy& a = *row.accuracy;
      o["accuracy"] = {{"sqnr_db", number_or_null(a.sqnr_db)},
                       {"exact", std::isinf(a.sqnr_db) && a.sqnr_db > 0},
                       {"cosine", a.cosine},
                       {"top1_agreement", a.top1_agreement < 0 ? ordered_json(nullptr) : ordered_json(a.top1_agreement)},
                       {"rows", a.rows},
                       {"elements", a.elements},
                       {"nonfinite", a.nonfinite}};
    } else {
      o["accuracy"] = nullptr;  // the FP32 reference, or a row that did not run
    }
    ordered_json ops = ordered_json::array();
    for (const OpShare& op : row.profile) {
      ops.push_back({{"node", op.node}, {"kernel", op.kernel}, {"precision", op.precision},
                     {"ms_per_run", op.ms_per_run}, {"share", op.share}});
    }
    o["profile"] = ops;
    ordered_json shares = ordered_json::object();
    for (const auto& [p, share] : row.precision_share) shares[p] = share;
    o["precision_share"] = shares;
    j["rows"].push_back(o);
  }
  return j.dump(2) + "\n";
}

}  // namespace kvant::tools::bench
