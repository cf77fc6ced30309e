// An incremental parser for HTTP/1.1 responses on a keep-alive connection: feed it the bytes
// as they arrive and it reports when one whole response (headers and a Content-Length or
// chunked body) has been read. Bodies are skipped, not stored. A response that ends only when
// the server closes the connection is rejected, since the connection could not be reused.
#pragma once

#include <charconv>
#include <cstddef>
#include <string_view>

namespace kw::bench {

class HttpResponseParser {
 public:
  enum class Result { kNeedMore, kComplete, kInvalid };

  // Prepares for the next response; `head_request` means the response has no body.
  void Reset(bool head_request) {
    state_ = State::kHead;
    head_request_ = head_request;
    status_ = 0;
    remaining_ = 0;
    close_ = false;
  }

  // Consumes bytes from the front of `input` and advances it. Returns kNeedMore when the
  // headers or a chunk-size line are incomplete: the unconsumed rest then stays in `input`
  // and must be passed again with more bytes appended.
  Result Feed(std::string_view& input) {
    while (true) {
      switch (state_) {
        case State::kHead: {
          std::size_t end = input.find("\r\n\r\n");
          if (end == std::string_view::npos) return Result::kNeedMore;
          if (!ParseHead(input.substr(0, end + 2))) return Result::kInvalid;
          input.remove_prefix(end + 4);
          break;
        }
        case State::kBody:
        case State::kChunkData: {
          std::size_t taken = remaining_ < input.size() ? remaining_ : input.size();
          input.remove_prefix(taken);
          remaining_ -= taken;
          if (remaining_ > 0) return Result::kNeedMore;
          if (state_ == State::kBody) return Complete();
          state_ = State::kChunkSize;
          break;
        }
        case State::kChunkSize: {
          std::size_t end = input.find("\r\n");
          if (end == std::string_view::npos) return Result::kNeedMore;
          std::string_view line = input.substr(0, end);
          input.remove_prefix(end + 2);
          auto [stop, error] =
              std::from_chars(line.data(), line.data() + line.size(), remaining_, 16);
          if (error != std::errc() || stop == line.data()) return Result::kInvalid;
          remaining_ += 2;  // the CRLF after the chunk data
          state_ = remaining_ == 2 ? State::kTrailers : State::kChunkData;
          break;
        }
        case State::kTrailers: {
          std::size_t end = input.find("\r\n");
          if (end == std::string_view::npos) return Result::kNeedMore;
          input.remove_prefix(end + 2);
          if (end == 0) return Complete();  // the empty line after the trailers
          break;
        }
      }
    }
  }

  int status() const { return status_; }
  // True when the server asked to close the connection after this response.
  bool close() const { return close_; }

 private:
  enum class State { kHead, kBody, kChunkSize, kChunkData, kTrailers };

  Result Complete() {
    state_ = State::kHead;
    return Result::kComplete;
  }

  static bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
      if ((a[i] | 0x20) != (b[i] | 0x20)) return false;
    }
    return true;
  }

  static std::string_view Trim(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
    return text;
  }

  // Parses the status line and the headers, each ending in CRLF, and picks the body framing.
  bool ParseHead(std::string_view head) {
    // "HTTP/1.1 200 OK"
    if (head.size() < 12 || !head.starts_with("HTTP/1.") || head[8] != ' ') return false;
    auto [stop, error] = std::from_chars(head.data() + 9, head.data() + 12, status_);
    if (error != std::errc() || stop != head.data() + 12) return false;
    bool http10 = head[7] == '0';
    bool has_length = false;
    bool chunked = false;
    bool keep_alive = false;
    head.remove_prefix(head.find("\r\n") + 2);
    while (!head.empty()) {
      std::size_t end = head.find("\r\n");
      std::string_view line = head.substr(0, end);
      head.remove_prefix(end + 2);
      std::size_t colon = line.find(':');
      if (colon == std::string_view::npos) return false;
      std::string_view name = line.substr(0, colon);
      std::string_view value = Trim(line.substr(colon + 1));
      if (EqualsIgnoreCase(name, "content-length")) {
        auto [end_of_number, number_error] =
            std::from_chars(value.data(), value.data() + value.size(), remaining_);
        if (number_error != std::errc() || end_of_number != value.data() + value.size()) {
          return false;
        }
        has_length = true;
      } else if (EqualsIgnoreCase(name, "transfer-encoding")) {
        chunked = EqualsIgnoreCase(value, "chunked");
        if (!chunked) return false;
      } else if (EqualsIgnoreCase(name, "connection")) {
        close_ = EqualsIgnoreCase(value, "close");
        keep_alive = EqualsIgnoreCase(value, "keep-alive");
      }
    }
    if (http10 && !keep_alive) close_ = true;

    if (status_ / 100 == 1) {
      state_ = State::kHead;  // an interim response: the real one follows
    } else if (head_request_ || status_ == 204 || status_ == 304) {
      remaining_ = 0;
      state_ = State::kBody;
    } else if (chunked) {
      state_ = State::kChunkSize;
    } else if (has_length) {
      state_ = State::kBody;
    } else {
      return false;  // the body would end at EOF
    }
    return true;
  }

  State state_ = State::kHead;
  bool head_request_ = false;
  int status_ = 0;
  std::size_t remaining_ = 0;
  bool close_ = false;
};

}  // namespace kw::bench
