#pragma once

#include <filesystem>
#include <functional>
#include <iosfwd>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "base/result.hpp"

// The client side of the keyward binary: global flags, the connection to the server, output
// formats, and the table of commands that every command family adds to.
namespace kw::cli {

// Exit codes of every client command.
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;  // the server refused, could not be reached, or a check failed
inline constexpr int kExitUsage = 2;  // bad flags or arguments

enum class OutputFormat { kTable, kJson, kYaml };

// Settings every client command shares. Each comes from its flag, else the KEYWARD_ variable,
// else the VAULT_ variable, else the default.
struct Globals {
  std::string address = "http://127.0.0.1:8200";  // -address, KEYWARD_ADDR, VAULT_ADDR
  std::string token;  // -token, KEYWARD_TOKEN, VAULT_TOKEN, then the token file
  std::string ca_cert;       // -ca-cert, KEYWARD_CACERT, VAULT_CACERT
  std::string client_cert;   // -client-cert, KEYWARD_CLIENT_CERT, VAULT_CLIENT_CERT
  std::string client_key;    // -client-key, KEYWARD_CLIENT_KEY, VAULT_CLIENT_KEY
  bool tls_skip_verify = false;  // -tls-skip-verify, KEYWARD_SKIP_VERIFY, VAULT_SKIP_VERIFY
  OutputFormat format = OutputFormat::kTable;  // -format, KEYWARD_FORMAT, VAULT_FORMAT
  std::string field;  // -field=NAME: print only this field, raw, for scripts
  bool raw = false;   // -raw (with -format=json or yaml): the whole response, not only data
};

// Removes the global flags from `args`, wherever they stand before a "--", and returns the
// settings with the environment and the token file applied, and the arguments left over.
// Global switches (-tls-skip-verify, -raw) take no value but accept -name=true|false.
// invalid_argument naming the flag for a missing or bad value (never the value of -token).
struct GlobalParse {
  Globals globals;
  std::vector<std::string> rest;
};
Result<GlobalParse> ParseGlobals(std::span<const std::string> args);

// One flag of one command.
struct FlagSpec {
  std::string name;          // without dashes
  bool takes_value = false;  // false: a switch, given as -name or -name=true|false
  std::string help;          // one line for -help
};

// The flags and positional arguments of one command after parsing.
struct Args {
  std::map<std::string, std::vector<std::string>> values;  // switches hold "true" or "false"
  std::vector<std::string> positional;
  bool help = false;  // -help, --help or -h was given

  bool has(const std::string& name) const { return values.contains(name); }
  // The last value given for `name`; nullopt when absent.
  std::optional<std::string> last(const std::string& name) const;
  // Every value given for `name` (a flag may repeat, like -policy); empty when absent.
  const std::vector<std::string>& all(const std::string& name) const;
  // True when switch `name` was given and not set to false.
  bool on(const std::string& name) const;
};

// Parses a command's arguments against `flags`. Flags take one or two dashes and may stand
// anywhere before "--"; "-" alone is a positional argument (stdin). invalid_argument naming
// the flag for an unknown flag, a missing value, or a value given to a switch.
Result<Args> ParseArgs(std::span<const std::string> args, std::span<const FlagSpec> flags);

// A reply from the server. Any HTTP status is a reply; only a failure to talk is an error.
struct HttpReply {
  int status = 0;
  std::string body;
  nlohmann::json json;  // the parsed body; null when it is empty or not JSON
  httplib::Headers headers;
  std::string version;  // of the status line: "HTTP/1.1"
  std::string reason;   // of the status line: "Not Found"
};

// A request body given as bytes, for requests that Connection::Send's JSON body cannot express.
struct RawBody {
  std::string bytes;                            // sent when not empty
  std::string content_type = "application/json";  // unless `headers` has a Content-Type
  httplib::Headers headers;                     // added; an X-Vault-Token here wins
  bool path_as_typed = false;  // true: the path (and any "?query") goes unencoded
};

// Connection to the server, configured from Globals: keep-alive, TCP_NODELAY, TLS with the CA
// file, client certificate and key, timeouts (10 s connect, 300 s read). The token goes as
// X-Vault-Token when set. One thread.
class Connection {
 public:
  explicit Connection(const Globals& globals);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sends `method` to /v1/<path> (a leading "/v1/" or "/" in `path` is accepted too) with
  // `query` URL-encoded. A `body` that is not null goes as JSON with Content-Type
  // application/json. unavailable naming the address when the server cannot be reached;
  // invalid_argument for an address that is not http(s)://HOST[:PORT].
  Result<HttpReply> Send(std::string_view method, std::string_view path,
                         const nlohmann::json& body = nullptr, const httplib::Params& query = {});

  // Like Send, with the body as bytes and extra headers: KV PATCH sends
  // application/merge-patch+json, and `keyward request` sends the caller's headers and path.
  Result<HttpReply> SendRaw(std::string_view method, std::string_view path, const RawBody& body);

  const Globals& globals() const { return globals_; }

 private:
  Result<HttpReply> Exchange(std::string_view method, std::string_view path, const RawBody& body,
                             const httplib::Params& query);

  Globals globals_;
  std::unique_ptr<httplib::Client> client_;
};

// The settings and streams a command runs with.
struct Context {
  Globals globals;
  std::istream& in;
  std::ostream& out;
  std::ostream& err;
};

// One command, such as "kv get" or "token create".
struct Command {
  std::string name;      // the words after "keyward", space-separated: "kv metadata get"
  std::string usage;     // "keyward kv get [flags] PATH"
  std::string summary;   // one line, shown in lists and at the top of -help
  std::string example;   // one example command line, shown by -help
  std::vector<FlagSpec> flags;
  // Runs the command. `args` contains the command's own flags and positional arguments.
  std::function<int(Context&, const Args&)> run;
};

// Each command family adds its commands to `commands`.
void AddGenericCommands(std::vector<Command>& commands);  // status, login, read, write, list,
                                                          // delete, request, operator ...
void AddKvCommands(std::vector<Command>& commands);       // kv ...
void AddAdminCommands(std::vector<Command>& commands);    // token, policy, lease, database,
                                                          // pki, audit ...

// Prints `command`'s help (usage, summary, flags, global flags, the example) to `out`.
void PrintCommandHelp(const Command& command, std::ostream& out);

// Parses data arguments into a JSON object of strings: key=value, key=@FILE (the file's
// bytes), key=- (stdin). A lone "-" reads a JSON object from stdin and a lone "@FILE" reads
// one from FILE. Errors name the key or file, never a value. Unless `allow_argv`, a plain
// key=value whose key looks like a secret (LooksLikeSecretKey) is refused with a hint to use
// key=@FILE or key=-; with it, a warning that shell history keeps the value goes to `err`.
Result<nlohmann::json> ParseDataArgs(std::span<const std::string> args, std::istream& in,
                                     std::ostream& err, bool allow_argv);

// True for keys named like a secret: password, passwd, secret, token, private key, pin,
// credential and the like, in any case and with any separator.
bool LooksLikeSecretKey(std::string_view key);

// Prints `response` as the globals ask. -field=NAME prints that field raw (strings without
// quotes, other values as JSON) and returns kExitError when it is missing. json and yaml
// print the response's "data" (or "auth" when data is null), or the whole response with -raw.
// table prints two aligned columns, Key and Value, of data, or of auth's fields for a login
// or token reply; nested values as compact JSON. Returns the exit code.
int PrintResponse(const Globals& globals, const nlohmann::json& response, std::ostream& out,
                  std::ostream& err);

// Prints the keys of a LIST reply (data.keys): one per line under a "Keys" header in table
// format, an array in json or yaml. Returns the exit code.
int PrintList(const Globals& globals, const nlohmann::json& response, std::ostream& out,
              std::ostream& err);

// Prints rows under `headers`, each column as wide as its widest cell, two spaces between.
void PrintTable(std::ostream& out, const std::vector<std::string>& headers,
                const std::vector<std::vector<std::string>>& rows);

// Returns member `key` of `object`, or null when `object` is not an object or has no such
// member. Unlike operator[] on a const json, it never asserts.
const nlohmann::json& Member(const nlohmann::json& object, std::string_view key);

// Returns `value` as one table cell: strings as they are, null as "n/a", anything else as
// compact JSON.
std::string CellText(const nlohmann::json& value);

// Returns `value` as a YAML document.
std::string ToYaml(const nlohmann::json& value);

// Prints "error: " and the server's messages for a failed reply (status and errors) to `err`
// and returns kExitError. `action` names the attempted operation ("reading secret/foo").
int ReportServerError(const HttpReply& reply, std::string_view action, std::ostream& err);

// Prints "error: <message>" to `err` and returns kExitError.
int ReportFailure(const Error& error, std::ostream& err);

// Prints "usage error: <message>", then the command's usage line and "-help" hint, to `err`
// and returns kExitUsage.
int ReportUsage(std::string_view message, const Command& command, std::ostream& err);

// $HOME/.keyward-token.
std::filesystem::path TokenFilePath();
// Writes the token file with mode 0600 (through a temporary file and a rename).
Status WriteTokenFile(std::string_view token);
// The token file's contents without surrounding whitespace; nullopt when there is none.
std::optional<std::string> ReadTokenFile();

}  // namespace kw::cli
