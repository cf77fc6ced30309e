// The commands that work on any path (read, write, list, delete, request) and on the server
// itself (status, login, operator ...).
#include <algorithm>
#include <cctype>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <variant>

#include "cli/cli.hpp"
#include "cli/command_support.hpp"

namespace kw::cli {

Command MakeCommand(CommandSpec spec, CommandBody body) {
  Command self{.name = std::move(spec.name),
               .usage = std::move(spec.usage),
               .summary = std::move(spec.summary),
               .example = std::move(spec.example),
               .flags = std::move(spec.flags),
               .run = nullptr};
  Command command = self;
  command.run = [self = std::move(self), body = std::move(body)](Context& context,
                                                                  const Args& args) {
    return body(context, args, self);
  };
  return command;
}

namespace {

std::string Trim(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return "";
  const auto last = text.find_last_not_of(" \t\r\n");
  return std::string(text.substr(first, last - first + 1));
}

Result<std::string> ReadFileBytes(const std::string& path, std::string_view what) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return InvalidArgument("cannot read " + std::string(what) + " file " + path);
  return std::string(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

}  // namespace

Result<std::string> ReadSecretSource(std::string_view source, std::istream& in,
                                     std::string_view what) {
  std::string text;
  if (source == "-") {
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } else if (source.starts_with("@") && source.size() > 1) {
    KW_ASSIGN_OR_RETURN(text, ReadFileBytes(std::string(source.substr(1)), what));
  } else {
    return InvalidArgument("give the " + std::string(what) +
                           " as - (stdin) or @FILE, not as an argument: shell history keeps "
                           "arguments");
  }
  text = Trim(text);
  if (text.empty()) return InvalidArgument("empty " + std::string(what));
  return text;
}

int PrintSuccess(const Globals& globals, std::string_view message, std::ostream& out) {
  if (globals.format == OutputFormat::kTable) out << "Success! " << message << "\n";
  return kExitOk;
}

namespace {

// Vault's `status` exits 2 when the server is sealed, and `operator init -status` when it is
// not initialized, so that scripts can tell.
constexpr int kExitSealed = 2;
constexpr int kExitNotInitialized = 2;

// Sends one request through a Connection made from the command's globals.
Result<HttpReply> Send(Context& context, std::string_view method, std::string_view path,
                       const nlohmann::json& body = nullptr, const httplib::Params& query = {}) {
  Connection connection(context.globals);
  return connection.Send(method, path, body, query);
}

bool HasServerMessages(const HttpReply& reply) {
  const nlohmann::json& errors = Member(reply.json, "errors");
  return errors.is_array() && !errors.empty();
}

// Reports a reply that is not 2xx. A 404 without messages is Vault's "nothing at this path".
int ReportNotOk(const HttpReply& reply, std::string_view action, std::string_view path,
                std::ostream& err) {
  if (reply.status == 404 && !HasServerMessages(reply)) {
    err << "error: " << action << ": no value found at " << path << "\n";
    return kExitError;
  }
  return ReportServerError(reply, action, err);
}

// ---- status ----

int PrintSealStatus(const Globals& globals, const nlohmann::json& status, std::ostream& out,
                    std::ostream& err) {
  if (globals.format != OutputFormat::kTable || !globals.field.empty()) {
    return PrintResponse(globals, {{"data", status}}, out, err);
  }
  std::vector<std::vector<std::string>> rows = {
      {"Seal Type", CellText(status.value("type", nlohmann::json(""))) },
      {"Initialized", CellText(status.value("initialized", nlohmann::json(false)))},
      {"Sealed", CellText(status.value("sealed", nlohmann::json(true)))},
      {"Total Shares", CellText(status.value("n", nlohmann::json(0)))},
      {"Threshold", CellText(status.value("t", nlohmann::json(0)))},
      {"Version", CellText(status.value("version", nlohmann::json("")))},
      {"Storage Type", CellText(status.value("storage_type", nlohmann::json("")))}};
  if (status.contains("cluster_name")) {
    rows.push_back({"Cluster Name", CellText(status["cluster_name"])});
  }
  PrintTable(out, {"Key", "Value"}, rows);
  return kExitOk;
}

int RunStatus(Context& context, const Args& args, const Command& command) {
  if (!args.positional.empty()) {
    return ReportUsage("status takes no arguments", command, context.err);
  }
  auto reply = Send(context, "GET", "sys/seal-status");
  if (!reply) return ReportFailure(reply.error(), context.err);
  if (reply->status != 200 || !reply->json.is_object()) {
    return ReportServerError(*reply, "reading the seal status", context.err);
  }
  const int printed = PrintSealStatus(context.globals, reply->json, context.out, context.err);
  if (printed != kExitOk) return printed;
  return reply->json.value("sealed", true) ? kExitSealed : kExitOk;
}

// ---- login ----

// Returns the token of a token login: the argument, or stdin for "-" or no argument.
Result<std::string> TokenArgument(const Args& args, std::istream& in) {
  if (args.positional.empty()) return ReadSecretSource("-", in, "token");
  const std::string& given = args.positional[0];
  if (given == "-" || given.starts_with("@")) return ReadSecretSource(given, in, "token");
  return given;
}

// Returns a reply shaped like a login reply (an auth block) from a lookup-self reply.
nlohmann::json AuthFromLookup(const std::string& token, const nlohmann::json& data) {
  nlohmann::json auth = {{"client_token", token},
                         {"accessor", data.value("accessor", "")},
                         {"policies", data.value("policies", nlohmann::json::array())},
                         {"token_policies", data.value("policies", nlohmann::json::array())},
                         {"metadata", data.value("meta", nlohmann::json(nullptr))},
                         {"lease_duration", data.value("ttl", 0)},
                         {"renewable", data.value("renewable", false)}};
  return nlohmann::json{{"data", nullptr}, {"auth", std::move(auth)}};
}

// Checks a token with auth/token/lookup-self and returns a login-shaped reply, or the exit code
// of the failure it reported.
std::variant<nlohmann::json, int> LoginWithToken(Context& context, const Args& args,
                                                  const Command& command) {
  if (args.positional.size() > 1) {
    return ReportUsage("token login takes one TOKEN, - or nothing (stdin)", command, context.err);
  }
  auto token = TokenArgument(args, context.in);
  if (!token) return ReportUsage(token.error().message(), command, context.err);
  Globals checked = context.globals;
  checked.token = *token;
  Connection connection(checked);
  auto reply = connection.Send("GET", "auth/token/lookup-self");
  if (!reply) return ReportFailure(reply.error(), context.err);
  const nlohmann::json& data = Member(reply->json, "data");
  if (reply->status != 200 || !data.is_object()) {
    return ReportServerError(*reply, "checking the token with auth/token/lookup-self",
                             context.err);
  }
  return AuthFromLookup(*token, data);
}

int RunLogin(Context& context, const Args& args, const Command& command) {
  const std::string method = args.last("method").value_or("token");
  const std::string mount = Trim(args.last("path").value_or(method));
  nlohmann::json response;

  if (method == "token") {
    auto checked = LoginWithToken(context, args, command);
    if (const int* exit_code = std::get_if<int>(&checked)) return *exit_code;
    response = std::move(std::get<nlohmann::json>(checked));
  } else if (method == "approle" || method == "cert") {
    auto data = ParseDataArgs(args.positional, context.in, context.err, args.on("allow-argv"));
    if (!data) return ReportUsage(data.error().message(), command, context.err);
    // IDs contain no whitespace, and a file written with `echo ID > FILE` ends in a newline.
    for (auto& [key, value] : data->items()) {
      if (value.is_string()) value = Trim(value.get<std::string>());
    }
    if (method == "approle" && !data->contains("role_id")) {
      return ReportUsage("missing role_id=...: AppRole login needs role_id and usually secret_id",
                         command, context.err);
    }
    if (method == "cert" && context.globals.client_cert.empty()) {
      return ReportUsage("-method=cert needs -client-cert and -client-key", command, context.err);
    }
    auto reply = Send(context, "POST", "auth/" + mount + "/login", *data);
    if (!reply) return ReportFailure(reply.error(), context.err);
    if (!IsSuccess(reply->status) ||
        !Member(Member(reply->json, "auth"), "client_token").is_string()) {
      return ReportServerError(*reply, "logging in at auth/" + mount + "/login", context.err);
    }
    response = std::move(reply->json);
  } else {
    return ReportUsage("unknown -method \"" + method + "\": use token, approle or cert", command,
                       context.err);
  }

  const bool store = !args.on("no-store");
  if (store) {
    const std::string token = response["auth"]["client_token"].get<std::string>();
    if (Status written = WriteTokenFile(token); !written) {
      return ReportFailure(written.error(), context.err);
    }
  }
  if (context.globals.format == OutputFormat::kTable && context.globals.field.empty()) {
    context.out << "Success! You are now authenticated.";
    if (store) context.out << " The token is stored in " << TokenFilePath().string() << ".";
    context.out << "\n\n";
  }
  return PrintResponse(context.globals, response, context.out, context.err);
}

// ---- read, write, list, delete ----

int RunRead(Context& context, const Args& args, const Command& command) {
  if (args.positional.empty()) return ReportUsage("missing PATH", command, context.err);
  const std::string& path = args.positional[0];
  httplib::Params query;
  for (std::size_t i = 1; i < args.positional.size(); ++i) {
    const std::string& pair = args.positional[i];
    const std::size_t equals = pair.find('=');
    if (equals == std::string::npos || equals == 0) {
      return ReportUsage("invalid query parameter \"" + pair + "\": expected key=value", command,
                         context.err);
    }
    query.emplace(pair.substr(0, equals), pair.substr(equals + 1));
  }
  auto reply = Send(context, "GET", path, nullptr, query);
  if (!reply) return ReportFailure(reply.error(), context.err);
  if (!IsSuccess(reply->status)) return ReportNotOk(*reply, "reading " + path, path, context.err);
  if (!reply->json.is_object()) {
    context.err << "error: reading " << path << ": the server sent no data\n";
    return kExitError;
  }
  return PrintResponse(context.globals, reply->json, context.out, context.err);
}

int RunWrite(Context& context, const Args& args, const Command& command) {
  if (args.positional.empty()) return ReportUsage("missing PATH", command, context.err);
  const std::string& path = args.positional[0];
  const std::span<const std::string> pairs(args.positional.begin() + 1, args.positional.end());
  if (pairs.empty() && !args.on("force") && !args.on("f")) {
    return ReportUsage("no data to write: give key=value pairs, - (a JSON object on stdin), or "
                       "-force to write an empty body",
                       command, context.err);
  }
  auto data = ParseDataArgs(pairs, context.in, context.err, args.on("allow-argv"));
  if (!data) return ReportUsage(data.error().message(), command, context.err);

  auto reply = Send(context, "PUT", path, *data);
  if (!reply) return ReportFailure(reply.error(), context.err);
  if (!IsSuccess(reply->status)) return ReportNotOk(*reply, "writing " + path, path, context.err);
  if (!reply->json.is_object()) {
    return PrintSuccess(context.globals, "Data written to: " + path, context.out);
  }
  return PrintResponse(context.globals, reply->json, context.out, context.err);
}

int RunList(Context& context, const Args& args, const Command& command) {
  if (args.positional.size() != 1) return ReportUsage("expected one PATH", command, context.err);
  const std::string& path = args.positional[0];
  auto reply = Send(context, "LIST", path);
  if (!reply) return ReportFailure(reply.error(), context.err);
  if (!IsSuccess(reply->status)) return ReportNotOk(*reply, "listing " + path, path, context.err);
  return PrintList(context.globals, reply->json, context.out, context.err);
}

int RunDelete(Context& context, const Args& args, const Command& command) {
  if (args.positional.size() != 1) return ReportUsage("expected one PATH", command, context.err);
  const std::string& path = args.positional[0];
  auto reply = Send(context, "DELETE", path);
  if (!reply) return ReportFailure(reply.error(), context.err);
  if (!IsSuccess(reply->status)) return ReportServerError(*reply, "deleting " + path, context.err);
  return PrintSuccess(context.globals, "Data deleted (if it existed) at: " + path, context.out);
}

// ---- request ----

Result<httplib::Headers> ParseHeaders(const std::vector<std::string>& lines) {
  httplib::Headers headers;
  for (const std::string& line : lines) {
    const std::size_t colon = line.find(':');
    const std::string name = colon == std::string::npos ? "" : Trim(line.substr(0, colon));
    if (name.empty()) {
      return InvalidArgument("invalid -H \"" + line + "\": expected \"Name: value\"");
    }
    headers.emplace(name, Trim(line.substr(colon + 1)));
  }
  return headers;
}

Result<std::string> RequestBody(const Args& args, std::istream& in) {
  const auto source = args.last("d");
  if (!source) return std::string();
  if (*source == "-") {
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  if (source->starts_with("@")) return ReadFileBytes(source->substr(1), "-d");
  return *source;
}

int RunRequest(Context& context, const Args& args, const Command& command) {
  if (args.positional.size() != 2) {
    return ReportUsage("expected METHOD and PATH", command, context.err);
  }
  std::string method = args.positional[0];
  std::transform(method.begin(), method.end(), method.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  const std::string& path = args.positional[1];
  auto headers = ParseHeaders(args.all("H"));
  if (!headers) return ReportUsage(headers.error().message(), command, context.err);
  auto body = RequestBody(args, context.in);
  if (!body) return ReportUsage(body.error().message(), command, context.err);

  RawBody raw;
  raw.bytes = *body;
  raw.headers = *headers;
  raw.path_as_typed = true;
  Connection connection(context.globals);
  auto sent = connection.SendRaw(method, path, raw);
  if (!sent) return ReportFailure(sent.error(), context.err);
  const HttpReply& reply = *sent;
  if (args.on("i")) {
    context.out << (reply.version.empty() ? "HTTP/1.1" : reply.version) << " " << reply.status;
    if (!reply.reason.empty()) context.out << " " << reply.reason;
    context.out << "\n";
    for (const auto& [name, value] : reply.headers) context.out << name << ": " << value << "\n";
    context.out << "\n";
  }
  context.out << reply.body;
  if (!reply.body.empty() && reply.body.back() != '\n') context.out << "\n";
  if (IsSuccess(reply.status)) return kExitOk;
  context.err << "error: " << method << " " << path << ": the server answered " << reply.status
              << "\n";
  return kExitError;
}

// ---- operator ----

int RunOperatorInit(Context& context, const Args& args, const Command& command) {
  if (!args.positional.empty()) {
    return ReportUsage("operator init takes no arguments", command, context.err);
  }
  if (args.on("status")) {
    auto reply = Send(context, "GET", "sys/init");
    if (!reply) return ReportFailure(reply.error(), context.err);
    if (reply->status != 200 || !reply->json.is_object()) {
      return ReportServerError(*reply, "reading sys/init", context.err);
    }
    const bool initialized = reply->json.value("initialized", false);
    context.out << (initialized ? "Vault is initialized" : "Vault is not initialized") << "\n";
    return initialized ? kExitOk : kExitNotInitialized;
  }

  nlohmann::json body = nlohmann::json::object();
  if (const auto source = args.last("pin")) {
    auto pin = ReadSecretSource(*source, context.in, "HSM PIN");
    if (!pin) return ReportUsage(pin.error().message(), command, context.err);
    body["pin"] = std::move(*pin);
  }
  auto reply = Send(context, "POST", "sys/init", body);
  if (!reply) return ReportFailure(reply.error(), context.err);
  if (reply->status != 200 || !reply->json.is_object()) {
    return ReportServerError(*reply, "initializing", context.err);
  }
  if (context.globals.format == OutputFormat::kTable && context.globals.field.empty()) {
    context.out << "Initial Root Token: " << reply->json.value("root_token", "") << "\n\n"
                << "Vault initialized. The HSM holds the keys, so there are no unseal keys to "
                   "store: after a seal, `keyward operator unseal` takes the HSM PIN.\n";
    return kExitOk;
  }
  return PrintResponse(context.globals, {{"data", reply->json}}, context.out, context.err);
}

int RunOperatorSeal(Context& context, const Args& args, const Command& command) {
  if (!args.positional.empty()) {
    return ReportUsage("operator seal takes no arguments", command, context.err);
  }
  auto reply = Send(context, "PUT", "sys/seal");
  if (!reply) return ReportFailure(reply.error(), context.err);
  if (!IsSuccess(reply->status)) return ReportServerError(*reply, "sealing", context.err);
  return PrintSuccess(context.globals, "Vault is sealed.", context.out);
}

int RunOperatorUnseal(Context& context, const Args& args, const Command& command) {
  if (args.positional.size() > 1) {
    return ReportUsage("operator unseal takes - or @FILE", command, context.err);
  }
  const std::string source = args.positional.empty() ? "-" : args.positional[0];
  auto pin = ReadSecretSource(source, context.in, "HSM PIN");
  if (!pin) return ReportUsage(pin.error().message(), command, context.err);
  auto reply = Send(context, "PUT", "sys/unseal", {{"key", std::move(*pin)}});
  if (!reply) return ReportFailure(reply.error(), context.err);
  if (reply->status != 200 || !reply->json.is_object()) {
    return ReportServerError(*reply, "unsealing", context.err);
  }
  const int printed = PrintSealStatus(context.globals, reply->json, context.out, context.err);
  if (printed != kExitOk) return printed;
  return reply->json.value("sealed", true) ? kExitSealed : kExitOk;
}

int RunOperatorRotate(Context& context, const Args& args, const Command& command) {
  if (!args.positional.empty()) {
    return ReportUsage("operator rotate takes no arguments", command, context.err);
  }
  auto reply = Send(context, "PUT", "sys/rotate");
  if (!reply) return ReportFailure(reply.error(), context.err);
  if (!IsSuccess(reply->status)) return ReportServerError(*reply, "rotating the key", context.err);
  auto status = Send(context, "GET", "sys/key-status");
  if (!status) return ReportFailure(status.error(), context.err);
  if (status->status != 200 || !status->json.is_object()) {
    return ReportServerError(*status, "reading sys/key-status", context.err);
  }
  if (context.globals.format == OutputFormat::kTable && context.globals.field.empty()) {
    context.out << "Success! Rotated key\n\n";
  }
  return PrintResponse(context.globals, status->json, context.out, context.err);
}

}  // namespace

void AddGenericCommands(std::vector<Command>& commands) {
  commands.push_back(MakeCommand(
      {.name = "status",
       .usage = "keyward status",
       .summary = "Print the seal status; exits 2 when the server is sealed",
       .example = "keyward status",
       .flags = {}},
      RunStatus));
  commands.push_back(MakeCommand(
      {.name = "login",
       .usage = "keyward login [flags] [TOKEN | - | key=value ...]",
       .summary = "Log in and store the token in ~/.keyward-token (mode 0600)",
       .example = "keyward login -method=approle role_id=web secret_id=@secret-id.txt",
       .flags = {{"method", true, "auth method: token (default), approle or cert"},
                 {"path", true, "mount path of the auth method (default: the method's name)"},
                 {"no-store", false, "print the token but do not store it in the token file"},
                 {"allow-argv", false,
                  "accept a secret_id given as a plain argument (shell history keeps it)"}}},
      RunLogin));
  commands.push_back(MakeCommand(
      {.name = "read",
       .usage = "keyward read [flags] PATH [key=value ...]",
       .summary = "Read any path (GET); key=value pairs become query parameters",
       .example = "keyward read sys/policy/default",
       .flags = {}},
      RunRead));
  commands.push_back(MakeCommand(
      {.name = "write",
       .usage = "keyward write [flags] PATH key=value ... | -",
       .summary = "Write to any path (PUT) with values from arguments, @FILE or stdin",
       .example = "keyward write sys/policy/app policy=@app.hcl",
       .flags = {{"force", false, "send an empty body when no data is given"},
                 {"f", false, "short for -force"},
                 {"allow-argv", false,
                  "accept a secret-looking key=value given as a plain argument (shell history "
                  "keeps it)"}}},
      RunWrite));
  commands.push_back(MakeCommand(
      {.name = "list",
       .usage = "keyward list PATH",
       .summary = "List the keys under any path (LIST)",
       .example = "keyward list sys/policy",
       .flags = {}},
      RunList));
  commands.push_back(MakeCommand(
      {.name = "delete",
       .usage = "keyward delete PATH",
       .summary = "Delete any path (DELETE)",
       .example = "keyward delete sys/policy/app",
       .flags = {}},
      RunDelete));
  commands.push_back(MakeCommand(
      {.name = "request",
       .usage = "keyward request [flags] METHOD PATH",
       .summary = "Send any request and print the raw response body; exits 1 on a non-2xx status",
       .example = "keyward request POST secret/data/app -d '{\"data\":{\"user\":\"web\"}}'",
       .flags = {{"d", true, "request body: JSON text, @FILE or - (stdin)"},
                 {"H", true, "extra header \"Name: value\"; repeatable"},
                 {"i", false, "print the status line and headers before the body"}}},
      RunRequest));
  commands.push_back(MakeCommand(
      {.name = "operator init",
       .usage = "keyward operator init [flags]",
       .summary = "Initialize the server and print the initial root token",
       .example = "keyward operator init -pin=@hsm-pin.txt",
       .flags = {{"pin", true, "HSM user PIN as @FILE or - (stdin); default: the server's "
                               "configured PIN source"},
                 {"status", false, "print whether the server is initialized: exit 0 yes, 2 no"}}},
      RunOperatorInit));
  commands.push_back(MakeCommand(
      {.name = "operator seal",
       .usage = "keyward operator seal",
       .summary = "Seal the server; unsealing then needs the HSM PIN",
       .example = "keyward operator seal",
       .flags = {}},
      RunOperatorSeal));
  commands.push_back(MakeCommand(
      {.name = "operator unseal",
       .usage = "keyward operator unseal [- | @FILE]",
       .summary = "Unseal the server with the HSM PIN from stdin (default) or a file",
       .example = "keyward operator unseal @hsm-pin.txt",
       .flags = {}},
      RunOperatorUnseal));
  commands.push_back(MakeCommand(
      {.name = "operator rotate",
       .usage = "keyward operator rotate",
       .summary = "Rotate the barrier data key and print the new key term",
       .example = "keyward operator rotate",
       .flags = {}},
      RunOperatorRotate));
}

}  // namespace kw::cli
