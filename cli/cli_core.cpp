// Global flags, command flag parsing, the HTTP connection, data arguments and the token file.
#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "cli/cli.hpp"

namespace kw::cli {
namespace {

// The global flags: name without dashes, and whether it takes a value.
struct GlobalFlag {
  std::string_view name;
  bool takes_value;
};
constexpr GlobalFlag kGlobalFlags[] = {
    {"address", true},      {"token", true},  {"ca-cert", true},
    {"client-cert", true},  {"client-key", true}, {"tls-skip-verify", false},
    {"format", true},       {"field", true},  {"raw", false},
};

// Returns the variable's value, or nullopt when it is unset or empty.
std::optional<std::string> GetEnv(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

// A flag's name and its "=value" part, if any, after one or two dashes. nullopt for arguments
// that are not flags: "-" alone, "--", and anything not starting with "-".
struct SplitFlag {
  std::string name;
  std::optional<std::string> value;
};
std::optional<SplitFlag> SplitFlagArgument(std::string_view arg) {
  if (arg.size() < 2 || arg[0] != '-' || arg == "--") return std::nullopt;
  arg.remove_prefix(arg.starts_with("--") ? 2 : 1);
  SplitFlag flag;
  if (const auto equals = arg.find('='); equals != std::string_view::npos) {
    flag.name = std::string(arg.substr(0, equals));
    flag.value = std::string(arg.substr(equals + 1));
  } else {
    flag.name = std::string(arg);
  }
  return flag;
}

// Parses a boolean as flags and environment variables spell it.
std::optional<bool> ParseBool(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  // What Vault's CLI (Go's strconv.ParseBool) accepts.
  if (lower == "1" || lower == "t" || lower == "true") return true;
  if (lower == "0" || lower == "f" || lower == "false") return false;
  return std::nullopt;
}

Result<OutputFormat> ParseFormat(std::string_view text, std::string_view source) {
  if (text == "table") return OutputFormat::kTable;
  if (text == "json") return OutputFormat::kJson;
  if (text == "yaml" || text == "yml") return OutputFormat::kYaml;
  return InvalidArgument("invalid " + std::string(source) + " \"" + std::string(text) +
                         "\": expected table, json or yaml");
}

// Applies the KEYWARD_ variable, else the VAULT_ one, to `target`.
void ApplyEnv(std::string& target, const char* keyward_name, const char* vault_name) {
  if (auto value = GetEnv(keyward_name)) {
    target = *value;
  } else if (auto fallback = GetEnv(vault_name)) {
    target = *fallback;
  }
}

// Returns the name of the set variable of the pair and its value.
std::optional<std::pair<std::string, std::string>> EnvPair(const char* keyward_name,
                                                           const char* vault_name) {
  if (auto value = GetEnv(keyward_name)) return std::make_pair(std::string(keyward_name), *value);
  if (auto value = GetEnv(vault_name)) return std::make_pair(std::string(vault_name), *value);
  return std::nullopt;
}

Status ApplyEnvironment(Globals& globals) {
  ApplyEnv(globals.address, "KEYWARD_ADDR", "VAULT_ADDR");
  ApplyEnv(globals.token, "KEYWARD_TOKEN", "VAULT_TOKEN");
  ApplyEnv(globals.ca_cert, "KEYWARD_CACERT", "VAULT_CACERT");
  ApplyEnv(globals.client_cert, "KEYWARD_CLIENT_CERT", "VAULT_CLIENT_CERT");
  ApplyEnv(globals.client_key, "KEYWARD_CLIENT_KEY", "VAULT_CLIENT_KEY");
  if (auto skip = EnvPair("KEYWARD_SKIP_VERIFY", "VAULT_SKIP_VERIFY")) {
    auto value = ParseBool(skip->second);
    if (!value) {
      return InvalidArgument("invalid " + skip->first + " \"" + skip->second +
                             "\": expected 1, t, true, 0, f or false");
    }
    globals.tls_skip_verify = *value;
  }
  if (auto format = EnvPair("KEYWARD_FORMAT", "VAULT_FORMAT")) {
    KW_ASSIGN_OR_RETURN(globals.format, ParseFormat(format->second, format->first));
  }
  return OkStatus();
}

// Applies one global flag given on the command line. The message never contains the value of
// -token.
Status ApplyGlobalFlag(Globals& globals, const std::string& name, const std::string& value,
                       bool value_given) {
  if (name == "tls-skip-verify" || name == "raw") {
    std::optional<bool> on = value_given ? ParseBool(value) : std::optional<bool>(true);
    if (!on) {
      return InvalidArgument("invalid value for -" + name + ": expected -" + name + ", -" + name +
                             "=true or -" + name + "=false");
    }
    (name == "raw" ? globals.raw : globals.tls_skip_verify) = *on;
    return OkStatus();
  }
  if (name == "format") {
    KW_ASSIGN_OR_RETURN(globals.format, ParseFormat(value, "-format"));
    return OkStatus();
  }
  if (name == "address") globals.address = value;
  if (name == "token") globals.token = value;
  if (name == "ca-cert") globals.ca_cert = value;
  if (name == "client-cert") globals.client_cert = value;
  if (name == "client-key") globals.client_key = value;
  if (name == "field") globals.field = value;
  return OkStatus();
}

const GlobalFlag* FindGlobalFlag(std::string_view name) {
  for (const auto& flag : kGlobalFlags) {
    if (flag.name == name) return &flag;
  }
  return nullptr;
}

// Percent-encodes everything but RFC 3986 unreserved characters, and '/' when `keep_slash`.
std::string PercentEncode(std::string_view text, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string encoded;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
        (keep_slash && c == '/')) {
      encoded += static_cast<char>(c);
    } else {
      encoded += '%';
      encoded += kHex[c >> 4];
      encoded += kHex[c & 0x0f];
    }
  }
  return encoded;
}

// The parts of http(s)://HOST[:PORT][/].
struct ParsedAddress {
  bool tls = false;
  std::string host;  // IPv6 addresses keep their brackets
  int port = 0;
};
Result<ParsedAddress> ParseAddress(std::string_view address) {
  const auto invalid = [&](std::string_view reason) {
    return InvalidArgument("invalid address \"" + std::string(address) + "\": " +
                           std::string(reason) + "; expected http://HOST:PORT or https://HOST:PORT");
  };
  ParsedAddress parsed;
  std::string_view rest = address;
  if (rest.starts_with("https://")) {
    parsed.tls = true;
    rest.remove_prefix(8);
  } else if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
  } else {
    return invalid("the scheme must be http or https");
  }

  if (rest.ends_with('/')) rest.remove_suffix(1);
  if (rest.find_first_of("/?#@") != std::string_view::npos) {
    return invalid("it may not contain a path, query or user");
  }

  std::string_view port_text;
  if (rest.starts_with('[')) {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) return invalid("an IPv6 address lacks its ']'");
    parsed.host = std::string(rest.substr(0, close + 1));
    std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return invalid("unexpected text after the IPv6 address");
      port_text = after.substr(1);
    }
  } else {
    const auto colon = rest.rfind(':');
    parsed.host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) port_text = rest.substr(colon + 1);
  }
  if (parsed.host.empty() || parsed.host == "[]") return invalid("the host is missing");

  if (port_text.empty()) {
    parsed.port = parsed.tls ? 443 : 80;
    return parsed;
  }
  int port = 0;
  for (char c : port_text) {
    if (!std::isdigit(static_cast<unsigned char>(c)) || port > 65535) return invalid("bad port");
    port = port * 10 + (c - '0');
  }
  if (port < 1 || port > 65535) return invalid("the port must be 1 to 65535");
  parsed.port = port;
  return parsed;
}

// Reads all of `path`. invalid_argument naming the file when it cannot be read.
Result<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return InvalidArgument("cannot read file \"" + path + "\": " + std::strerror(errno));
  }
  std::ostringstream contents;
  contents << file.rdbuf();
  if (file.bad()) return InvalidArgument("cannot read file \"" + path + "\"");
  return contents.str();
}

// Parses `text` as a JSON object. Errors name `source`, never the text.
Result<nlohmann::json> ParseJsonObject(const std::string& text, std::string_view source) {
  nlohmann::json parsed = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return InvalidArgument(std::string(source) + " does not contain a JSON object");
  }
  return parsed;
}

// True when `text` is valid UTF-8, which JSON strings must be.
bool IsUtf8(std::string_view text) {
  try {
    (void)nlohmann::json(text).dump();
    return true;
  } catch (const nlohmann::json::type_error&) {
    return false;
  }
}

// Splits a key into lower-case words at separators and at lower-to-upper case changes, so
// "dbPassword", "db_password" and "DB-PASSWORD" all give {"db", "password"}.
std::vector<std::string> KeyWords(std::string_view key) {
  std::vector<std::string> words;
  std::string current;
  char previous = '\0';
  for (char c : key) {
    const auto uc = static_cast<unsigned char>(c);
    if (!std::isalnum(uc)) {
      if (!current.empty()) words.push_back(std::move(current));
      current.clear();
    } else {
      if (std::isupper(uc) && std::islower(static_cast<unsigned char>(previous)) &&
          !current.empty()) {
        words.push_back(std::move(current));
        current.clear();
      }
      current += static_cast<char>(std::tolower(uc));
    }
    previous = c;
  }
  if (!current.empty()) words.push_back(std::move(current));
  return words;
}

// Says in words why a request got no reply, and what to check.
std::string TransportErrorText(httplib::Error error, bool tls, const Globals& globals) {
  switch (error) {
    case httplib::Error::Connection:
      return "the connection was refused or the host is unreachable (is the server running "
             "at this address?)";
    case httplib::Error::ConnectionTimeout:
      return "no connection within 10 seconds";
    case httplib::Error::Read:
      return tls ? "the connection closed while reading the reply"
                 : "the connection closed while reading the reply (if the server serves "
                   "HTTPS, use an https:// address)";
    case httplib::Error::Write:
      return "the connection closed while sending the request";
    case httplib::Error::SSLConnection:
      return "the TLS handshake failed (if the server serves plain HTTP, use an http:// "
             "address; if it asks for a client certificate, give -client-cert and "
             "-client-key)";
    case httplib::Error::SSLLoadingCerts:
      return globals.ca_cert.empty()
                 ? "cannot load the system's CA certificates"
                 : "cannot load CA certificates from " + globals.ca_cert +
                       " (-ca-cert, KEYWARD_CACERT): it must be a readable PEM file";
    case httplib::Error::SSLServerVerification:
      return "the server's certificate did not verify (give the server's CA with -ca-cert or "
             "KEYWARD_CACERT)";
    default:
      return httplib::to_string(error);
  }
}

}  // namespace

// ---- Globals ----

Result<GlobalParse> ParseGlobals(std::span<const std::string> args) {
  GlobalParse parse;
  KW_RETURN_IF_ERROR(ApplyEnvironment(parse.globals));

  // Flags override the environment, so they are applied after it.
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      parse.rest.insert(parse.rest.end(), args.begin() + static_cast<std::ptrdiff_t>(i),
                        args.end());
      break;
    }
    auto split = SplitFlagArgument(arg);
    const GlobalFlag* flag = split ? FindGlobalFlag(split->name) : nullptr;
    if (flag == nullptr) {
      parse.rest.push_back(arg);
      continue;
    }
    std::string value;
    if (split->value) {
      value = *split->value;
    } else if (flag->takes_value) {
      if (i + 1 >= args.size()) {
        return InvalidArgument("missing value for flag -" + split->name);
      }
      value = args[++i];
    }
    KW_RETURN_IF_ERROR(
        ApplyGlobalFlag(parse.globals, split->name, value, split->value.has_value()));
  }

  if (parse.globals.client_cert.empty() != parse.globals.client_key.empty()) {
    return InvalidArgument(
        "-client-cert and -client-key (or KEYWARD_CLIENT_CERT and KEYWARD_CLIENT_KEY) must be "
        "given together");
  }
  if (parse.globals.token.empty()) {
    if (auto token = ReadTokenFile()) parse.globals.token = *token;
  }
  return parse;
}

// ---- Args ----

std::optional<std::string> Args::last(const std::string& name) const {
  auto it = values.find(name);
  if (it == values.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

const std::vector<std::string>& Args::all(const std::string& name) const {
  static const std::vector<std::string> kNone;
  auto it = values.find(name);
  return it == values.end() ? kNone : it->second;
}

bool Args::on(const std::string& name) const {
  auto value = last(name);
  return value.has_value() && *value != "false";
}

Result<Args> ParseArgs(std::span<const std::string> args, std::span<const FlagSpec> flags) {
  Args parsed;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      parsed.positional.insert(parsed.positional.end(),
                               args.begin() + static_cast<std::ptrdiff_t>(i) + 1, args.end());
      break;
    }
    auto split = SplitFlagArgument(arg);
    if (!split) {
      parsed.positional.push_back(arg);
      continue;
    }
    if (split->name == "help" || split->name == "h") {
      parsed.help = true;
      continue;
    }
    auto spec = std::find_if(flags.begin(), flags.end(),
                             [&](const FlagSpec& f) { return f.name == split->name; });
    if (spec == flags.end()) return InvalidArgument("unknown flag -" + split->name);

    if (!spec->takes_value) {
      std::optional<bool> on = split->value ? ParseBool(*split->value) : std::optional(true);
      if (!on) {
        return InvalidArgument("flag -" + split->name + " is a switch: give -" + split->name +
                               " or -" + split->name + "=false");
      }
      parsed.values[split->name].push_back(*on ? "true" : "false");
      continue;
    }
    if (split->value) {
      parsed.values[split->name].push_back(*split->value);
    } else if (i + 1 < args.size()) {
      parsed.values[split->name].push_back(args[++i]);
    } else {
      return InvalidArgument("missing value for flag -" + split->name);
    }
  }
  return parsed;
}

// ---- Connection ----

Connection::Connection(const Globals& globals) : globals_(globals) {}

Connection::~Connection() = default;

Result<HttpReply> Connection::Send(std::string_view method, std::string_view path,
                                   const nlohmann::json& body, const httplib::Params& query) {
  RawBody raw;
  if (!body.is_null()) raw.bytes = body.dump();
  return Exchange(method, path, raw, query);
}

Result<HttpReply> Connection::SendRaw(std::string_view method, std::string_view path,
                                      const RawBody& body) {
  return Exchange(method, path, body, {});
}

Result<HttpReply> Connection::Exchange(std::string_view method, std::string_view path,
                                       const RawBody& body, const httplib::Params& query) {
  KW_ASSIGN_OR_RETURN(ParsedAddress address, ParseAddress(globals_.address));
  if (!client_) {
    const std::string scheme_host_port =
        std::string(address.tls ? "https://" : "http://") + address.host + ":" +
        std::to_string(address.port);
    if (address.tls && (!globals_.client_cert.empty() || !globals_.client_key.empty())) {
      if (globals_.client_cert.empty() || globals_.client_key.empty()) {
        return InvalidArgument("-client-cert and -client-key must be given together");
      }
      client_ = std::make_unique<httplib::Client>(scheme_host_port, globals_.client_cert,
                                                  globals_.client_key);
    } else {
      client_ = std::make_unique<httplib::Client>(scheme_host_port);
    }
    if (!client_->is_valid()) {
      return InvalidArgument("cannot set up TLS for " + globals_.address +
                             ": check -client-cert and -client-key");
    }
    client_->set_keep_alive(true);
    client_->set_tcp_nodelay(true);
    client_->set_connection_timeout(10);
    client_->set_read_timeout(300);
    client_->set_write_timeout(300);
    // Paths and queries are encoded below, so httplib must not encode them again.
    client_->set_url_encode(false);
    if (address.tls) {
      if (!globals_.ca_cert.empty()) client_->set_ca_cert_path(globals_.ca_cert);
      client_->enable_server_certificate_verification(!globals_.tls_skip_verify);
    }
  }

  std::string_view relative = path;
  if (relative.starts_with("/v1/")) relative.remove_prefix(4);
  while (relative.starts_with('/')) relative.remove_prefix(1);

  httplib::Request request;
  request.method = std::string(method);
  request.path = "/v1/" + (body.path_as_typed ? std::string(relative)
                                              : PercentEncode(relative, /*keep_slash=*/true));
  char separator = request.path.find('?') == std::string::npos ? '?' : '&';
  for (const auto& [key, value] : query) {
    request.path += separator + PercentEncode(key, false) + "=" + PercentEncode(value, false);
    separator = '&';
  }
  request.headers = body.headers;
  if (!request.has_header("X-Vault-Request")) request.headers.emplace("X-Vault-Request", "true");
  if (!globals_.token.empty() && !request.has_header("X-Vault-Token")) {
    request.headers.emplace("X-Vault-Token", globals_.token);
  }
  if (!body.bytes.empty()) {
    request.body = body.bytes;
    if (!request.has_header("Content-Type")) {
      request.headers.emplace("Content-Type", body.content_type);
    }
  }

  httplib::Result result = client_->send(request);
  if (!result) {
    return Unavailable("cannot reach " + globals_.address + ": " +
                       TransportErrorText(result.error(), address.tls, globals_));
  }

  HttpReply reply;
  reply.status = result->status;
  reply.body = std::move(result->body);
  reply.headers = result->headers;
  reply.json = nlohmann::json::parse(reply.body, nullptr, /*allow_exceptions=*/false);
  if (reply.json.is_discarded()) reply.json = nullptr;
  reply.version = result->version;
  reply.reason = result->reason;
  return reply;
}

// ---- Data arguments ----

bool LooksLikeSecretKey(std::string_view key) {
  const std::vector<std::string> words = KeyWords(key);
  if (words.empty()) return false;
  const auto is_one_of = [](const std::string& word,
                            std::initializer_list<std::string_view> candidates) {
    return std::find(candidates.begin(), candidates.end(), word) != candidates.end();
  };
  // The last word names what the value is: "token_ttl" and "secret_id_num_uses" are settings
  // about a secret, "client_secret" and "db_password" are secrets.
  const std::string& last = words.back();
  if (is_one_of(last, {"password", "passwd", "passphrase", "passcode", "pin", "pincode", "pwd",
                       "pw", "pass", "otp", "cvv", "secret", "token", "jwt", "bearer",
                       "authorization", "credential", "credentials", "creds", "apikey",
                       "privkey", "privatekey", "accesskey", "secretkey", "signingkey"})) {
    return true;
  }
  if (words.size() < 2) return false;
  const std::string& before = words[words.size() - 2];
  if (last == "id") return before == "secret";  // an AppRole secret_id
  if (last == "key") {
    return is_one_of(before, {"private", "priv", "secret", "api", "access", "signing", "client",
                              "session", "master", "encryption", "aes", "hmac", "ssh", "tls",
                              "wrapping", "unseal", "recovery", "shared"});
  }
  return false;
}

Result<nlohmann::json> ParseDataArgs(std::span<const std::string> args, std::istream& in,
                                     std::ostream& err, bool allow_argv) {
  nlohmann::json data = nlohmann::json::object();
  bool stdin_used = false;
  const auto take_stdin = [&](std::string_view user) -> Result<std::string> {
    if (stdin_used) {
      return InvalidArgument(std::string(user) + ": standard input can be read only once");
    }
    stdin_used = true;
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };

  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    const std::string position = "data argument " + std::to_string(i + 1);

    if (arg == "-") {
      KW_ASSIGN_OR_RETURN(std::string text, take_stdin(position));
      KW_ASSIGN_OR_RETURN(nlohmann::json object, ParseJsonObject(text, "standard input"));
      data.update(object);
      continue;
    }
    const auto equals = arg.find('=');
    if (arg.starts_with('@') && equals == std::string::npos) {
      const std::string file = arg.substr(1);
      KW_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(file));
      KW_ASSIGN_OR_RETURN(nlohmann::json object, ParseJsonObject(text, "file \"" + file + "\""));
      data.update(object);
      continue;
    }
    // The argument itself is not shown, because a mistyped "key:value" may contain a secret.
    if (equals == std::string::npos || equals == 0) {
      return InvalidArgument(position + " is not key=value, key=@FILE or key=-");
    }

    const std::string key = arg.substr(0, equals);
    const std::string raw_value = arg.substr(equals + 1);
    std::string value;
    if (raw_value == "-") {
      KW_ASSIGN_OR_RETURN(value, take_stdin("key \"" + key + "\""));
      // `echo value | keyward ... key=-` appends a newline that is not part of the value.
      if (value.ends_with('\n')) value.pop_back();
      if (value.ends_with('\r')) value.pop_back();
    } else if (raw_value.starts_with('@')) {
      auto contents = ReadWholeFile(raw_value.substr(1));
      if (!contents) return tl::unexpected(contents.error().WithContext("key \"" + key + "\""));
      value = std::move(*contents);
    } else {
      if (LooksLikeSecretKey(key)) {
        if (!allow_argv) {
          return InvalidArgument("key \"" + key +
                                 "\" looks like a secret, and a value on the command line "
                                 "stays in shell history: give " + key + "=@FILE or " + key +
                                 "=- (standard input), or add -allow-argv");
        }
        err << "warning: the value of \"" << key
            << "\" was given on the command line, and shell history keeps it\n";
      }
      value = raw_value;
    }
    if (!IsUtf8(value)) {
      return InvalidArgument("the value of key \"" + key +
                             "\" is not UTF-8 text; encode binary data as base64 first");
    }
    data[key] = std::move(value);
  }
  return data;
}

// ---- Token file ----

std::filesystem::path TokenFilePath() {
  if (auto home = GetEnv("HOME")) return std::filesystem::path(*home) / ".keyward-token";
  if (const passwd* entry = getpwuid(getuid()); entry != nullptr && entry->pw_dir != nullptr) {
    return std::filesystem::path(entry->pw_dir) / ".keyward-token";
  }
  return {};
}

Status WriteTokenFile(std::string_view token) {
  const std::filesystem::path path = TokenFilePath();
  if (path.empty()) return FailedPrecondition("cannot find the home directory: set HOME");

  // mkstemp creates the file with O_EXCL and mode 0600, so no other user can open it between
  // creation and the rename.
  std::string temp = path.string() + ".XXXXXX";
  const int fd = mkstemp(temp.data());
  if (fd < 0) {
    return Internal("cannot create a temporary file next to " + path.string() + ": " +
                    std::strerror(errno));
  }
  const auto fail = [&](std::string_view step) {
    const std::string message = std::string(step) + " " + temp + ": " + std::strerror(errno);
    ::close(fd);
    ::unlink(temp.c_str());
    return Internal(message);
  };
  if (::fchmod(fd, 0600) != 0) return fail("cannot set the mode of");
  std::string contents(token);
  contents += '\n';
  std::string_view remaining = contents;
  while (!remaining.empty()) {
    const ssize_t written = ::write(fd, remaining.data(), remaining.size());
    if (written < 0) {
      if (errno == EINTR) continue;
      return fail("cannot write");
    }
    remaining.remove_prefix(static_cast<std::size_t>(written));
  }
  if (::fsync(fd) != 0) return fail("cannot sync");
  if (::close(fd) != 0) {
    const std::string message = "cannot close " + temp + ": " + std::strerror(errno);
    ::unlink(temp.c_str());
    return Internal(message);
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    const std::string message =
        "cannot rename " + temp + " to " + path.string() + ": " + std::strerror(errno);
    ::unlink(temp.c_str());
    return Internal(message);
  }
  return OkStatus();
}

std::optional<std::string> ReadTokenFile() {
  const std::filesystem::path path = TokenFilePath();
  if (path.empty()) return std::nullopt;
  // Like ssh with a private key, a token that others could read or replace is not used.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ELOOP) {
      std::cerr << "warning: ignoring the token file " << path.string()
                << " because it is a symbolic link\n";
    }
    return std::nullopt;
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    std::cerr << "warning: ignoring the token file " << path.string()
              << " because it is not a regular file\n";
    return std::nullopt;
  }
  if ((info.st_mode & 077) != 0) {
    ::close(fd);
    std::cerr << "warning: ignoring the token file " << path.string()
              << " because group or others can read it; run: chmod 600 " << path.string()
              << "\n";
    return std::nullopt;
  }

  std::string contents;
  char buffer[4096];
  for (;;) {
    const ssize_t count = ::read(fd, buffer, sizeof buffer);
    if (count < 0 && errno == EINTR) continue;
    if (count <= 0) break;
    contents.append(buffer, static_cast<std::size_t>(count));
  }
  ::close(fd);

  const auto is_space = [](unsigned char c) { return std::isspace(c) != 0; };
  auto begin = std::find_if_not(contents.begin(), contents.end(), is_space);
  auto end = std::find_if_not(contents.rbegin(), contents.rend(), is_space).base();
  if (begin >= end) return std::nullopt;
  return std::string(begin, end);
}

}  // namespace kw::cli
