// A peer runtime in a child process (ONNX Runtime through ort_peer.py),
// driven line by line over pipes so that its timed runs interleave with
// Kvant's: both see the same machine noise.
#ifndef KVANT_TOOLS_BENCH_PEER_H_
#define KVANT_TOOLS_BENCH_PEER_H_

#include <sys/types.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kvant::tools::bench {

class Peer {
 public:
  // Starts `argv` with its stdin and stdout on pipes; stderr is ours.
  static absl::StatusOr<Peer> Start(const std::vector<std::string>& argv);
  Peer(Peer&& other) noexcept;
  Peer& operator=(Peer&&) = delete;
  ~Peer();

  absl::Status WriteLine(const std::string& line);
  // The next line of its stdout (without the newline); an error when it
  // exited first, with its exit status.
  absl::StatusOr<std::string> ReadLine();

 private:
  Peer(pid_t pid, FILE* in, FILE* out, std::string name) : pid_(pid), in_(in), out_(out), name_(std::move(name)) {}
  absl::Status Exited();
  pid_t pid_ = -1;
  FILE* in_ = nullptr;   // its stdin
  FILE* out_ = nullptr;  // its stdout
  std::string name_;
};

// ort_peer.py, as embedded in the binary.
const char* OrtPeerScript();

}  // namespace kvant::tools::bench

#endif  // KVANT_TOOLS_BENCH_PEER_H_
