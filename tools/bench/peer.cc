// Child process with piped stdin/stdout for `kvant bench --vs`.
#include "tools/bench/peer.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "tools/bench/ort_peer_script.h"

namespace kvant::tools::bench {

const char* OrtPeerScript() { return kOrtPeerScript; }

absl::StatusOr<Peer> Peer::Start(const std::vector<std::string>& argv) {
  const std::string name = absl::StrJoin(argv, " ");
  int to_child[2], from_child[2];
  if (pipe2(to_child, O_CLOEXEC) != 0) return absl::InternalError(absl::StrFormat("pipe: %s", std::strerror(errno)));
  if (pipe2(from_child, O_CLOEXEC) != 0) {
    close(to_child[0]);
    close(to_child[1]);
    return absl::InternalError(absl::StrFormat("pipe: %s", std::strerror(errno)));
  }
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    for (int fd : {to_child[0], to_child[1], from_child[0], from_child[1]}) close(fd);
    return absl::InternalError(absl::StrFormat("failed to start %s: fork: %s", name, std::strerror(errno)));
  }
  if (pid == 0) {
    dup2(to_child[0], 0);
    dup2(from_child[1], 1);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    std::fprintf(stderr, "kvant: failed to start %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  close(to_child[0]);
  close(from_child[1]);
  FILE* in = fdopen(to_child[1], "w");
  FILE* out = fdopen(from_child[0], "r");
  Peer peer(pid, in, out, name);  // owns the process and whatever opened
  if (in == nullptr || out == nullptr) {
    if (in == nullptr) close(to_child[1]);
    if (out == nullptr) close(from_child[0]);
    return absl::InternalError(absl::StrFormat("failed to talk to %s: fdopen: %s", name, std::strerror(errno)));
  }
  return peer;
}

Peer::Peer(Peer&& other) noexcept : pid_(other.pid_), in_(other.in_), out_(other.out_), name_(std::move(other.name_)) {
  other.pid_ = -1;
  other.in_ = other.out_ = nullptr;
}

Peer::~Peer() {
  if (in_) std::fclose(in_);  // EOF on its stdin ends its command loop
  if (out_) std::fclose(out_);
  if (pid_ > 0) {
    int status;
    if (waitpid(pid_, &status, WNOHANG) == 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, &status, 0);
    }
  }
}

absl::Status Peer::Exited() {
  int status = 0;
  if (pid_ > 0 && waitpid(pid_, &status, 0) == pid_) {
    pid_ = -1;
    return absl::UnavailableError(absl::StrFormat(
        "%s exited with status %d before answering (its messages are above)", name_,
        WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)));
  }
  return absl::UnavailableError(absl::StrFormat("%s stopped answering", name_));
}

absl::Status Peer::WriteLine(const std::string& line) {
  // A peer that died turns the write into EPIPE, not a signal.
  struct sigaction ignore {}, old {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ignore, &old);
  const bool ok = std::fputs((line + "\n").c_str(), in_) >= 0 && std::fflush(in_) == 0;
  sigaction(SIGPIPE, &old, nullptr);
  return ok ? absl::OkStatus() : Exited();
}

absl::StatusOr<std::string> Peer::ReadLine() {
  std::string line;
  for (int c; (c = std::fgetc(out_)) != EOF;) {
    if (c == '\n') return line;
    line.push_back(static_cast<char>(c));
  }
  return Exited();
}

}  // namespace kvant::tools::bench
