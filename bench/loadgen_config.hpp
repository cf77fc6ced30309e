// keyward-loadgen's settings: the target URL (loopback only), the weighted request mix and the
// source address range, parsed from the command line and checked before any connection.
#pragma once

#include <boost/asio/ip/address_v4.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "bench/bench_options.hpp"

namespace kw::bench {

enum class Mode { kClosed, kRate, kIdle };

// One --request: the whole HTTP/1.1 request text, split where {n} or {k} appear in the path.
struct RequestTemplate {
  std::uint64_t weight = 1;
  bool head = false;                  // a HEAD request: the response has no body
  std::vector<std::string> literals;  // one more than placeholders
  std::string placeholders;           // 'n' or 'k' for each gap between literals

  bool constant() const { return placeholders.empty(); }

  // Writes the request for counter value `n` into `out`, reusing its capacity.
  void Build(std::uint64_t n, std::uint64_t keys, std::string& out) const {
    out.clear();
    out += literals[0];
    for (std::size_t i = 0; i < placeholders.size(); ++i) {
      char digits[24];
      std::uint64_t value = placeholders[i] == 'n' ? n : n % keys;
      auto [end, error] = std::to_chars(digits, digits + sizeof(digits), value);
      out.append(digits, end);
      out += literals[i + 1];
    }
  }
};

struct LoadgenConfig {
  Mode mode = Mode::kClosed;
  boost::asio::ip::tcp::endpoint target;
  std::size_t connections = 32;
  std::size_t threads = 1;
  std::optional<double> seconds;
  std::optional<std::uint64_t> count;
  double rate = 0;
  std::uint64_t keys = 0;                         // 0: {k} not allowed
  std::vector<boost::asio::ip::address> sources;  // empty: the kernel picks the source
  std::vector<RequestTemplate> requests;
};

namespace detail {

inline std::string ReadFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw std::invalid_argument("cannot read body file " + path);
  return std::string(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

// Splits "http://HOST:PORT/path" and resolves HOST, which must be a loopback address.
inline std::string ParseUrl(const std::string& url, LoadgenConfig& config) {
  std::string_view rest = url;
  if (!rest.starts_with("http://")) {
    throw std::invalid_argument("--url must start with http:// (plain HTTP only), not " + url);
  }
  rest.remove_prefix(7);

  std::string_view authority = rest.substr(0, rest.find('/'));
  std::string path =
      authority.size() < rest.size() ? std::string(rest.substr(authority.size())) : std::string();
  std::size_t colon = authority.rfind(':');
  if (colon == std::string_view::npos || authority.ends_with(']')) {
    throw std::invalid_argument("--url needs an explicit port: http://127.0.0.1:PORT");
  }
  std::string host(authority.substr(0, colon));
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host == "localhost") host = "127.0.0.1";

  std::uint16_t port = 0;
  std::string_view port_text = authority.substr(colon + 1);
  auto [end, error] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (error != std::errc() || end != port_text.data() + port_text.size() || port == 0) {
    throw std::invalid_argument("--url has an invalid port: " + url);
  }

  boost::system::error_code parse_error;
  auto address = boost::asio::ip::make_address(host, parse_error);
  if (parse_error) throw std::invalid_argument("--url host must be an IP address: " + url);
  if (!address.is_loopback()) {
    throw std::invalid_argument("--url must name a loopback address (127.0.0.0/8 or ::1); " + host +
                                " is not one");
  }
  config.target = boost::asio::ip::tcp::endpoint(address, port);
  return path;
}

// Parses "127.0.0.2-127.0.0.50" into every address of the range, all loopback.
inline std::vector<boost::asio::ip::address> ParseSourceRange(const std::string& range) {
  std::size_t dash = range.find('-');
  boost::system::error_code first_error;
  boost::system::error_code last_error;
  auto first = boost::asio::ip::make_address_v4(range.substr(0, dash), first_error);
  auto last = boost::asio::ip::make_address_v4(
      dash == std::string::npos ? range : range.substr(dash + 1), last_error);
  if (first_error || last_error || first > last || !first.is_loopback() || !last.is_loopback() ||
      last.to_uint() - first.to_uint() >= 65536) {
    throw std::invalid_argument("--source-range must be FIRST-LAST, both IPv4 loopback " +
                                std::string("addresses, at most 65536 of them; not ") + range);
  }
  std::vector<boost::asio::ip::address> sources;
  for (std::uint32_t value = first.to_uint(); value <= last.to_uint(); ++value) {
    sources.emplace_back(boost::asio::ip::address_v4(value));
  }
  return sources;
}

// Parses "WEIGHT METHOD PATH [@BODYFILE]" into a request template.
inline RequestTemplate ParseRequest(const std::string& spec, const std::string& host_header,
                                    const std::string& headers, std::uint64_t keys) {
  std::istringstream fields(spec);
  std::string weight_text, method, path, body_file, extra;
  fields >> weight_text >> method >> path >> body_file >> extra;
  RequestTemplate request;
  auto [end, error] =
      std::from_chars(weight_text.data(), weight_text.data() + weight_text.size(), request.weight);
  if (error != std::errc() || end != weight_text.data() + weight_text.size() ||
      request.weight == 0 || request.weight > 1000000 || method.empty() || !path.starts_with('/') ||
      !extra.empty() || (!body_file.empty() && !body_file.starts_with('@'))) {
    throw std::invalid_argument("--request must be \"WEIGHT METHOD /PATH [@BODYFILE]\" with a " +
                                std::string("weight from 1 to 1000000, not \"") + spec + "\"");
  }
  std::string body = body_file.empty() ? "" : ReadFile(body_file.substr(1));
  request.head = method == "HEAD";

  std::string current = method + " ";
  for (std::size_t i = 0; i < path.size(); ++i) {
    if (path.compare(i, 3, "{n}") == 0 || path.compare(i, 3, "{k}") == 0) {
      if (path[i + 1] == 'k' && keys == 0) {
        throw std::invalid_argument("--request uses {k}, so --keys must be given");
      }
      request.literals.push_back(current);
      request.placeholders += path[i + 1];
      current.clear();
      i += 2;
    } else {
      current += path[i];
    }
  }
  current += " HTTP/1.1\r\nHost: " + host_header + "\r\n" + headers;
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    current += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  current += "\r\n" + body;
  request.literals.push_back(current);
  return request;
}

}  // namespace detail

inline LoadgenConfig ParseLoadgenConfig(const Options& options) {
  LoadgenConfig config;
  std::string mode = options.Get("mode", "closed");
  if (mode == "closed") {
    config.mode = Mode::kClosed;
  } else if (mode == "rate") {
    config.mode = Mode::kRate;
  } else if (mode == "idle") {
    config.mode = Mode::kIdle;
  } else {
    throw std::invalid_argument("--mode must be closed, rate or idle, not \"" + mode + "\"");
  }
  if (!options.Has("url")) throw std::invalid_argument("--url is required; see --help");
  std::string url_path = detail::ParseUrl(options.Get("url"), config);

  config.connections = options.GetCount("connections", 32, 1, 1000000);
  config.threads = options.GetCount("threads", 1, 1, 256);
  if (config.threads > config.connections) config.threads = config.connections;
  if (options.Has("seconds")) config.seconds = options.GetNumber("seconds", 0, 0.001, 1e7);
  if (options.Has("count")) config.count = options.GetCount("count", 0, 1, UINT64_MAX);
  config.keys = options.GetCount("keys", 0, 1, UINT64_MAX);
  if (config.mode == Mode::kClosed && !config.seconds && !config.count) config.seconds = 10;
  if (config.mode == Mode::kRate) {
    if (!options.Has("rate")) throw std::invalid_argument("--mode rate needs --rate");
    config.rate = options.GetNumber("rate", 0, 0.001, 1e8);
    if (!config.seconds) config.seconds = 10;
    if (config.count) throw std::invalid_argument("--count applies to --mode closed only");
  }
  std::string sources = options.Get("source-range");
  if (sources.empty() && config.mode == Mode::kIdle) sources = "127.0.0.2-127.0.0.50";
  if (!sources.empty()) {
    if (!config.target.address().is_v4()) {
      throw std::invalid_argument("--source-range needs an IPv4 --url");
    }
    config.sources = detail::ParseSourceRange(sources);
  }

  std::string host_header = options.Get("url").substr(7);
  host_header = host_header.substr(0, host_header.find('/'));
  std::string headers;
  for (const std::string& header : options.All("header")) {
    std::size_t colon = header.find(':');
    if (colon == std::string::npos || colon == 0 ||
        header.find_first_of("\r\n") != std::string::npos) {
      throw std::invalid_argument("--header must be \"Name: value\" on one line, not \"" + header +
                                  "\"");
    }
    std::string name = header.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (name == "host" || name == "content-length") {
      throw std::invalid_argument("--header " + name + " is set by keyward-loadgen itself");
    }
    headers += header + "\r\n";
  }
  std::vector<std::string> specs = options.All("request");
  if (specs.empty()) {
    std::string path = url_path;
    if (path.empty()) path = config.mode == Mode::kIdle ? "/v1/sys/health" : "/";
    specs.push_back("1 GET " + path);
  }
  for (const std::string& spec : specs) {
    config.requests.push_back(detail::ParseRequest(spec, host_header, headers, config.keys));
  }
  return config;
}

}  // namespace kw::bench
