// The administration commands: token, policy, lease, database creds, pki and audit. They
// call the endpoints Vault's CLI calls for the same commands, with keyward's fields.
#include <istream>
#include <iterator>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "cli/audit_commands.hpp"
#include "cli/audit_support.hpp"
#include "cli/cli.hpp"
#include "cli/command_support.hpp"

namespace kw::cli {

namespace {

// The reply of one request, or the exit code after its failure was reported.
struct Outcome {
  std::optional<HttpReply> reply;  // set only for a 2xx status
  int exit_code = kExitOk;
};

// Sends one request and reports a connection failure or a status other than 2xx. `action`
// names the operation in the error message ("creating a token").
Outcome Call(Context& context, std::string_view method, const std::string& path,
             const nlohmann::json& body, std::string_view action) {
  Connection connection(context.globals);
  Result<HttpReply> reply = connection.Send(method, path, body);
  if (!reply) return {std::nullopt, ReportFailure(reply.error(), context.err)};
  if (!IsSuccess(reply->status)) {
    return {std::nullopt, ReportServerError(*reply, action, context.err)};
  }
  return {std::move(*reply), kExitOk};
}

// True when the command prints text of its own (a policy document, a capability list) rather
// than going through PrintResponse.
bool PrintsText(const Globals& globals) {
  return globals.format == OutputFormat::kTable && globals.field.empty();
}

// Returns `response` with its lease fields (lease_id, lease_duration, lease_renewable) put in
// front of the data for -format=json|yaml, which print only the data: a script needs the
// lease ID to renew or revoke a credential. The table format prints the lease fields itself,
// and -raw keeps the response as the server sent it.
nlohmann::json WithLeaseFields(const Globals& globals, nlohmann::json response) {
  if (globals.raw || globals.format == OutputFormat::kTable || !response.is_object()) {
    return response;
  }
  const auto lease_id = response.find("lease_id");
  if (lease_id == response.end() || !lease_id->is_string() ||
      lease_id->get_ref<const std::string&>().empty()) {
    return response;
  }
  nlohmann::json data = {{"lease_id", *lease_id},
                         {"lease_duration", response.value("lease_duration", 0)},
                         {"lease_renewable", response.value("renewable", false)}};
  if (response.contains("data") && response["data"].is_object()) {
    for (const auto& [key, value] : response["data"].items()) data[key] = value;
  }
  response["data"] = std::move(data);
  return response;
}

// Splits repeated flag values at commas, as Vault's list flags do: -policy=a,b -policy=c.
std::vector<std::string> ListFlag(const Args& args, const std::string& name) {
  std::vector<std::string> items;
  for (const std::string& value : args.all(name)) {
    std::size_t start = 0;
    while (start <= value.size()) {
      const std::size_t comma = std::min(value.find(',', start), value.size());
      if (comma > start) items.push_back(value.substr(start, comma - start));
      start = comma + 1;
    }
  }
  return items;
}

// Returns the token that a positional argument names. "-" reads it from stdin and @FILE from
// a file, which keeps it out of shell history. Any other argument is the token itself.
Result<std::string> TokenArgument(Context& context, const std::string& argument) {
  if (argument == "-" || argument.starts_with("@")) {
    return ReadSecretSource(argument, context.in, "token");
  }
  return argument;
}

// ---- token ----

// Returns the body of auth/token/create from the flags of `keyward token create`.
// invalid_argument naming the flag for a bad -num-uses or -metadata.
Result<nlohmann::json> TokenCreateBody(const Args& args) {
  nlohmann::json body = nlohmann::json::object();
  if (const auto policies = ListFlag(args, "policy"); !policies.empty())
    body["policies"] = policies;
  for (const auto& [flag, field] :
       {std::pair{"ttl", "ttl"}, std::pair{"explicit-max-ttl", "explicit_max_ttl"},
        std::pair{"period", "period"}, std::pair{"display-name", "display_name"}}) {
    if (const auto value = args.last(flag)) body[field] = *value;
  }
  if (const auto uses = args.last("num-uses")) {
    KW_ASSIGN_OR_RETURN(const std::uint64_t count, detail::ParseCount("num-uses", *uses));
    body["num_uses"] = count;
  }
  if (args.has("renewable")) body["renewable"] = args.on("renewable");
  if (args.has("no-default-policy")) body["no_default_policy"] = args.on("no-default-policy");
  if (const auto cidrs = ListFlag(args, "bound-cidr"); !cidrs.empty()) body["bound_cidrs"] = cidrs;
  if (const auto paths = ListFlag(args, "bound-path"); !paths.empty()) body["bound_paths"] = paths;
  if (args.has("metadata")) {
    nlohmann::json meta = nlohmann::json::object();
    for (const std::string& pair : args.all("metadata")) {
      const std::size_t equals = pair.find('=');
      if (equals == std::string::npos || equals == 0) {
        return InvalidArgument("flag -metadata: expected KEY=VALUE, got \"" + pair + "\"");
      }
      meta[pair.substr(0, equals)] = pair.substr(equals + 1);
    }
    body["meta"] = std::move(meta);
  }
  return body;
}

int TokenCreate(Context& context, const Args& args, const Command& command) {
  if (!args.positional.empty()) {
    return ReportUsage("token create takes no arguments; give policies with -policy", command,
                       context.err);
  }
  if (args.on("orphan") && args.has("role")) {
    return ReportUsage("-orphan and -role exclude each other: a role sets orphan itself", command,
                       context.err);
  }
  Result<nlohmann::json> body = TokenCreateBody(args);
  if (!body) return ReportUsage(body.error().message(), command, context.err);

  std::string path = "auth/token/create";
  if (args.on("orphan")) path = "auth/token/create-orphan";
  if (const auto role = args.last("role")) path = "auth/token/create/" + *role;
  Outcome outcome = Call(context, "POST", path, *body, "creating a token");
  if (!outcome.reply) return outcome.exit_code;
  return PrintResponse(context.globals, outcome.reply->json, context.out, context.err);
}

int TokenLookup(Context& context, const Args& args, const Command& command) {
  if (args.positional.size() > 1) {
    return ReportUsage("too many arguments: give one token or accessor", command, context.err);
  }
  std::string path = "auth/token/lookup-self";
  nlohmann::json body = nullptr;
  std::string method = "GET";
  if (args.on("accessor")) {
    if (args.positional.empty())
      return ReportUsage("-accessor needs an ACCESSOR", command, context.err);
    path = "auth/token/lookup-accessor";
    body = {{"accessor", args.positional.front()}};
    method = "POST";
  } else if (!args.positional.empty()) {
    Result<std::string> token = TokenArgument(context, args.positional.front());
    if (!token) return ReportFailure(token.error(), context.err);
    path = "auth/token/lookup";
    body = {{"token", *token}};
    method = "POST";
  }
  Outcome outcome = Call(context, method, path, body, "looking up the token");
  if (!outcome.reply) return outcome.exit_code;
  return PrintResponse(context.globals, outcome.reply->json, context.out, context.err);
}

int TokenRenew(Context& context, const Args& args, const Command& command) {
  if (args.positional.size() > 1) {
    return ReportUsage("too many arguments: give one token or accessor", command, context.err);
  }
  nlohmann::json body = nlohmann::json::object();
  if (const auto increment = args.last("increment")) body["increment"] = *increment;
  std::string path = "auth/token/renew-self";
  if (args.on("accessor")) {
    if (args.positional.empty())
      return ReportUsage("-accessor needs an ACCESSOR", command, context.err);
    path = "auth/token/renew-accessor";
    body["accessor"] = args.positional.front();
  } else if (!args.positional.empty()) {
    Result<std::string> token = TokenArgument(context, args.positional.front());
    if (!token) return ReportFailure(token.error(), context.err);
    path = "auth/token/renew";
    body["token"] = *token;
  }
  Outcome outcome = Call(context, "POST", path, body, "renewing the token");
  if (!outcome.reply) return outcome.exit_code;
  return PrintResponse(context.globals, outcome.reply->json, context.out, context.err);
}

int TokenRevoke(Context& context, const Args& args, const Command& command) {
  const std::string mode = args.last("mode").value_or("");
  if (!mode.empty() && mode != "orphan") {
    return ReportUsage("-mode must be orphan (path mode is not supported)", command, context.err);
  }
  const bool self = args.on("self");
  if (self && (args.on("accessor") || !mode.empty() || !args.positional.empty())) {
    return ReportUsage("-self takes no token, -accessor or -mode", command, context.err);
  }
  if (!self && args.positional.size() != 1) {
    return ReportUsage("give one token (\"-\" reads it from stdin), or -self", command,
                       context.err);
  }
  if (args.on("accessor") && !mode.empty()) {
    return ReportUsage("-accessor and -mode=orphan exclude each other", command, context.err);
  }

  std::string path = "auth/token/revoke-self";
  nlohmann::json body = nlohmann::json::object();
  if (args.on("accessor")) {
    path = "auth/token/revoke-accessor";
    body["accessor"] = args.positional.front();
  } else if (!self) {
    Result<std::string> token = TokenArgument(context, args.positional.front());
    if (!token) return ReportFailure(token.error(), context.err);
    path = mode == "orphan" ? "auth/token/revoke-orphan" : "auth/token/revoke";
    body["token"] = *token;
  }
  Outcome outcome = Call(context, "POST", path, body, "revoking the token");
  if (!outcome.reply) return outcome.exit_code;
  return PrintSuccess(context.globals, "Revoked token (if it existed)", context.out);
}

int TokenCapabilities(Context& context, const Args& args, const Command& command) {
  if (args.positional.empty() || args.positional.size() > 2) {
    return ReportUsage("give PATH, or TOKEN and PATH", command, context.err);
  }
  const std::string& path = args.positional.back();
  nlohmann::json body = {{"paths", {path}}};
  std::string endpoint = "sys/capabilities-self";
  if (args.positional.size() == 2) {
    if (args.on("accessor")) {
      endpoint = "sys/capabilities-accessor";
      body["accessor"] = args.positional.front();
    } else {
      Result<std::string> token = TokenArgument(context, args.positional.front());
      if (!token) return ReportFailure(token.error(), context.err);
      endpoint = "sys/capabilities";
      body["token"] = *token;
    }
  } else if (args.on("accessor")) {
    return ReportUsage("-accessor needs an ACCESSOR before PATH", command, context.err);
  }
  Outcome outcome = Call(context, "POST", endpoint, body, "reading capabilities of " + path);
  if (!outcome.reply) return outcome.exit_code;
  if (!PrintsText(context.globals)) {
    return PrintResponse(context.globals, outcome.reply->json, context.out, context.err);
  }

  // Vault's CLI prints the capabilities as one comma-separated line.
  const nlohmann::json& reply = outcome.reply->json;
  const nlohmann::json data = reply.contains("data") ? reply["data"] : reply;
  const nlohmann::json capabilities =
      data.value("capabilities", data.value(path, nlohmann::json()));
  if (!capabilities.is_array()) {
    return ReportFailure(Error(Code::kDataLoss, "the reply has no capabilities for " + path),
                         context.err);
  }
  std::string line;
  for (const nlohmann::json& capability : capabilities) {
    if (!line.empty()) line += ", ";
    line += CellText(capability);
  }
  context.out << line << "\n";
  return kExitOk;
}

void AddTokenCommands(std::vector<Command>& commands) {
  commands.push_back(MakeCommand(
      {.name = "token create",
       .usage = "keyward token create [flags]",
       .summary = "Create a child of the calling token (auth/token/create)",
       .example = "keyward token create -policy=app-reader -ttl=1h -bound-path='secret/data/app/*'",
       .flags =
           {{"policy", true, "a policy to attach; repeatable or comma-separated"},
            {"ttl", true, "the initial TTL (\"1h\" or seconds)"},
            {"explicit-max-ttl", true, "the TTL that renewals never pass"},
            {"period", true, "a periodic token: each renewal resets the TTL to this"},
            {"num-uses", true, "the number of requests the token may make (0: unlimited)"},
            {"renewable", false, "whether the token can be renewed (default true)"},
            {"orphan", false, "create the token without a parent (auth/token/create-orphan, sudo)"},
            {"role", true, "create the token under this token role's rules"},
            {"display-name", true, "a name shown in lookups and audit records"},
            {"metadata", true, "KEY=VALUE metadata; repeatable"},
            {"no-default-policy", false, "do not attach the default policy"},
            {"bound-cidr", true, "client addresses (CIDR) the token may be used from; repeatable"},
            {"bound-path", true,
             "a path glob that limits the token below its policies; repeatable"}}},
      TokenCreate));
  commands.push_back(
      MakeCommand({.name = "token lookup",
                   .usage = "keyward token lookup [flags] [TOKEN | - (stdin) | -accessor ACCESSOR]",
                   .summary = "Print a token's properties; the calling token without an argument",
                   .example = "keyward token lookup -accessor 8f3c9a...",
                   .flags = {{"accessor", false, "the argument is an accessor, not a token"}}},
                  TokenLookup));
  commands.push_back(MakeCommand(
      {.name = "token renew",
       .usage = "keyward token renew [flags] [TOKEN]",
       .summary = "Extend a token's TTL up to its max TTL; the calling token without an argument",
       .example = "keyward token renew -increment=30m",
       .flags = {{"increment", true,
                  "the new TTL from now (\"30m\" or seconds); default: the creation TTL"},
                 {"accessor", false, "the argument is an accessor, not a token"}}},
      TokenRenew));
  commands.push_back(MakeCommand(
      {.name = "token revoke",
       .usage = "keyward token revoke [flags] TOKEN | - (stdin) | -self",
       .summary = "Revoke a token and its descendants (-mode=orphan keeps the descendants)",
       .example = "keyward token revoke -accessor 8f3c9a...",
       .flags = {{"self", false, "revoke the calling token"},
                 {"accessor", false, "the argument is an accessor, not a token"},
                 {"mode", true,
                  "orphan: revoke only this token; its children become orphans (sudo)"}}},
      TokenRevoke));
  commands.push_back(MakeCommand(
      {.name = "token capabilities",
       .usage = "keyward token capabilities [flags] [TOKEN] PATH",
       .summary = "Print the capabilities a token has on PATH; the calling token without TOKEN",
       .example = "keyward token capabilities secret/data/app/db",
       .flags = {{"accessor", false, "the TOKEN argument is an accessor"}}},
      TokenCapabilities));
}

// ---- policy ----

int PolicyWrite(Context& context, const Args& args, const Command& command) {
  if (args.positional.size() != 2) {
    return ReportUsage("give NAME and FILE (\"-\" reads the policy from stdin)", command,
                       context.err);
  }
  const std::string& name = args.positional[0];
  const std::string& source = args.positional[1];
  std::string document;
  if (source == "-") {
    document.assign(std::istreambuf_iterator<char>(context.in), std::istreambuf_iterator<char>());
  } else {
    Result<std::string> read = detail::ReadWholeFile(source);
    if (!read) return ReportFailure(read.error(), context.err);
    document = std::move(*read);
  }
  if (document.find_first_not_of(" \t\r\n") == std::string::npos) {
    return ReportFailure(
        Error(Code::kInvalidArgument,
              "the policy from " + (source == "-" ? "stdin" : source) + " is empty"),
        context.err);
  }
  Outcome outcome = Call(context, "PUT", "sys/policies/acl/" + name, {{"policy", document}},
                         "writing policy " + name);
  if (!outcome.reply) return outcome.exit_code;
  return PrintSuccess(context.globals, "Uploaded policy: " + name, context.out);
}

int PolicyRead(Context& context, const Args& args, const Command& command) {
  if (args.positional.size() != 1) return ReportUsage("give one policy NAME", command, context.err);
  const std::string& name = args.positional.front();
  Outcome outcome =
      Call(context, "GET", "sys/policies/acl/" + name, nullptr, "reading policy " + name);
  if (!outcome.reply) return outcome.exit_code;
  const nlohmann::json& reply = outcome.reply->json;
  if (!PrintsText(context.globals)) {
    return PrintResponse(context.globals, reply, context.out, context.err);
  }
  // Like Vault's CLI, the table format prints the document itself.
  const nlohmann::json data = reply.value("data", nlohmann::json::object());
  if (!data.is_object() || !data.contains("policy") || !data["policy"].is_string()) {
    return ReportFailure(Error(Code::kDataLoss, "the reply for policy " + name + " has no policy"),
                         context.err);
  }
  std::string document = data["policy"].get<std::string>();
  if (!document.ends_with("\n")) document += "\n";
  context.out << document;
  return kExitOk;
}

int PolicyList(Context& context, const Args& args, const Command& command) {
  if (!args.positional.empty())
    return ReportUsage("policy list takes no arguments", command, context.err);
  Outcome outcome = Call(context, "LIST", "sys/policies/acl", nullptr, "listing policies");
  if (!outcome.reply) return outcome.exit_code;
  return PrintList(context.globals, outcome.reply->json, context.out, context.err);
}

int PolicyDelete(Context& context, const Args& args, const Command& command) {
  if (args.positional.size() != 1) return ReportUsage("give one policy NAME", command, context.err);
  const std::string& name = args.positional.front();
  Outcome outcome =
      Call(context, "DELETE", "sys/policies/acl/" + name, nullptr, "deleting policy " + name);
  if (!outcome.reply) return outcome.exit_code;
  return PrintSuccess(context.globals, "Deleted policy: " + name, context.out);
}

void AddPolicyCommands(std::vector<Command>& commands) {
  commands.push_back(MakeCommand(
      {.name = "policy write",
       .usage = "keyward policy write NAME FILE|-",
       .summary = "Create or replace an ACL policy from an HCL or JSON file, or stdin with \"-\"",
       .example = "keyward policy write app-reader app-reader.hcl",
       .flags = {}},
      PolicyWrite));
  commands.push_back(MakeCommand({.name = "policy read",
                                  .usage = "keyward policy read NAME",
                                  .summary = "Print an ACL policy's document",
                                  .example = "keyward policy read app-reader",
                                  .flags = {}},
                                 PolicyRead));
  commands.push_back(MakeCommand({.name = "policy list",
                                  .usage = "keyward policy list",
                                  .summary = "List the ACL policy names",
                                  .example = "keyward policy list",
                                  .flags = {}},
                                 PolicyList));
  commands.push_back(
      MakeCommand({.name = "policy delete",
                   .usage = "keyward policy delete NAME",
                   .summary = "Delete an ACL policy; deleting a missing one succeeds",
                   .example = "keyward policy delete app-reader",
                   .flags = {}},
                  PolicyDelete));
}

// ---- lease ----

int LeaseLookup(Context& context, const Args& args, const Command& command) {
  if (args.positional.size() != 1) return ReportUsage("give one lease ID", command, context.err);
  const std::string& id = args.positional.front();
  Outcome outcome =
      Call(context, "PUT", "sys/leases/lookup", {{"lease_id", id}}, "looking up lease " + id);
  if (!outcome.reply) return outcome.exit_code;
  return PrintResponse(context.globals, outcome.reply->json, context.out, context.err);
}

int LeaseRenew(Context& context, const Args& args, const Command& command) {
  if (args.positional.size() != 1) return ReportUsage("give one lease ID", command, context.err);
  const std::string& id = args.positional.front();
  nlohmann::json body = {{"lease_id", id}};
  if (const auto increment = args.last("increment")) body["increment"] = *increment;
  Outcome outcome = Call(context, "PUT", "sys/leases/renew", body, "renewing lease " + id);
  if (!outcome.reply) return outcome.exit_code;
  return PrintResponse(context.globals, WithLeaseFields(context.globals, outcome.reply->json),
                       context.out, context.err);
}

int LeaseRevoke(Context& context, const Args& args, const Command& command) {
  if (args.positional.size() != 1) {
    return ReportUsage("give one lease ID, or a prefix with -prefix", command, context.err);
  }
  if (args.on("force") && !args.on("prefix")) {
    return ReportUsage("-force needs -prefix", command, context.err);
  }
  const std::string& id = args.positional.front();
  if (args.on("prefix")) {
    const std::string action = args.on("force") ? "revoke-force" : "revoke-prefix";
    Outcome outcome = Call(context, "PUT", "sys/leases/" + action + "/" + id,
                           nlohmann::json::object(), "revoking the leases under " + id);
    if (!outcome.reply) return outcome.exit_code;
    return PrintSuccess(
        context.globals,
        "Queued the revocation of every lease under " + id +
            (args.on("force") ? ", also where the credential cannot be revoked" : ""),
        context.out);
  }
  Outcome outcome =
      Call(context, "PUT", "sys/leases/revoke", {{"lease_id", id}}, "revoking lease " + id);
  if (!outcome.reply) return outcome.exit_code;
  return PrintSuccess(context.globals, "Revoked lease: " + id, context.out);
}

void AddLeaseCommands(std::vector<Command>& commands) {
  commands.push_back(MakeCommand({.name = "lease lookup",
                                  .usage = "keyward lease lookup ID",
                                  .summary = "Print a lease's issue and expiry times and TTL",
                                  .example = "keyward lease lookup database/creds/app/AbC123",
                                  .flags = {}},
                                 LeaseLookup));
  commands.push_back(MakeCommand(
      {.name = "lease renew",
       .usage = "keyward lease renew [-increment=DURATION] ID",
       .summary = "Extend a lease, never past its max TTL",
       .example = "keyward lease renew -increment=1h database/creds/app/AbC123",
       .flags = {{"increment", true,
                  "the new TTL from now (\"1h\" or seconds); default: the lease's TTL"}}},
      LeaseRenew));
  commands.push_back(MakeCommand(
      {.name = "lease revoke",
       .usage = "keyward lease revoke [-prefix [-force]] ID",
       .summary = "Revoke a lease and its credential, or every lease under a prefix (-prefix)",
       .example = "keyward lease revoke -prefix database/creds/app",
       .flags =
           {{"prefix", false, "ID is a prefix: revoke every lease under it (sudo)"},
            {"force", false,
             "with -prefix: remove the leases even when their credentials cannot be revoked"}}},
      LeaseRevoke));
}

// ---- database ----

int DatabaseCreds(Context& context, const Args& args, const Command& command) {
  if (args.positional.size() != 1) return ReportUsage("give one ROLE", command, context.err);
  const std::string& role = args.positional.front();
  Outcome outcome = Call(context, "GET", "database/creds/" + role, nullptr,
                         "creating a credential for role " + role);
  if (!outcome.reply) return outcome.exit_code;
  return PrintResponse(context.globals, WithLeaseFields(context.globals, outcome.reply->json),
                       context.out, context.err);
}

// ---- pki ----

// Sends POST pki/<endpoint>/ROLE with the KEY=VALUE arguments after ROLE. With -out, the
// private key goes to that file (mode 0600) and is left out of the output.
int PkiRequest(Context& context, const Args& args, const Command& command,
               const std::string& endpoint, std::string_view action) {
  if (args.positional.empty()) return ReportUsage("missing ROLE", command, context.err);
  const std::string& role = args.positional.front();
  const std::vector<std::string> fields(args.positional.begin() + 1, args.positional.end());
  Result<nlohmann::json> body =
      ParseDataArgs(fields, context.in, context.err, /*allow_argv=*/false);
  if (!body) return ReportUsage(body.error().message(), command, context.err);

  Outcome outcome = Call(context, "POST", "pki/" + endpoint + "/" + role, *body,
                         std::string(action) + " with role " + role);
  if (!outcome.reply) return outcome.exit_code;
  nlohmann::json reply = std::move(outcome.reply->json);

  if (const auto out = args.last("out")) {
    nlohmann::json* data = reply.contains("data") ? &reply["data"] : nullptr;
    if (data == nullptr || !data->contains("private_key") || !(*data)["private_key"].is_string()) {
      return ReportFailure(Error(Code::kDataLoss, "the reply has no private_key for -out"),
                           context.err);
    }
    std::string key = (*data)["private_key"].get<std::string>();
    if (!key.ends_with("\n")) key += "\n";
    if (Status written = detail::WriteFileAtomically(*out, key, 0600); !written) {
      return ReportFailure(written.error(), context.err);
    }
    data->erase("private_key");
    context.err << "Saved the private key to " << *out << " (mode 0600)\n";
  }
  return PrintResponse(context.globals, reply, context.out, context.err);
}

void AddPkiCommands(std::vector<Command>& commands) {
  commands.push_back(MakeCommand(
      {.name = "pki issue",
       .usage = "keyward pki issue [-out FILE] ROLE spiffe_id=ID [ttl=DURATION]",
       .summary = "Generate a key pair and its X.509-SVID; the private key goes to stdout or -out",
       .example = "keyward pki issue -out web-key.pem prod "
                  "spiffe_id=spiffe://example.org/ns/prod/web ttl=30m",
       .flags = {{"out", true,
                  "write the private key (PEM) to FILE with mode 0600 instead of printing it"}}},
      [](Context& context, const Args& args, const Command& command) {
        return PkiRequest(context, args, command, "issue", "issuing an X.509-SVID");
      }));
  commands.push_back(MakeCommand(
      {.name = "pki sign",
       .usage = "keyward pki sign ROLE csr=@FILE spiffe_id=ID [ttl=DURATION]",
       .summary = "Sign a PKCS#10 CSR as an X.509-SVID, using only the CSR's public key",
       .example = "keyward pki sign prod csr=@web.csr spiffe_id=spiffe://example.org/ns/prod/web",
       .flags = {}},
      [](Context& context, const Args& args, const Command& command) {
        return PkiRequest(context, args, command, "sign", "signing a CSR");
      }));
  commands.push_back(MakeCommand(
      {.name = "pki jwt",
       .usage = "keyward pki jwt ROLE spiffe_id=ID audience=AUD[,AUD...] [ttl=DURATION]",
       .summary = "Issue a JWT-SVID (pki/jwt/issue/ROLE)",
       .example = "keyward pki jwt prod spiffe_id=spiffe://example.org/ns/prod/web "
                  "audience=reports -field=token",
       .flags = {}},
      [](Context& context, const Args& args, const Command& command) {
        return PkiRequest(context, args, command, "jwt/issue", "issuing a JWT-SVID");
      }));
}

}  // namespace

void AddAdminCommands(std::vector<Command>& commands) {
  AddTokenCommands(commands);
  AddPolicyCommands(commands);
  AddLeaseCommands(commands);
  commands.push_back(
      MakeCommand({.name = "database creds",
                   .usage = "keyward database creds ROLE",
                   .summary = "Create a database credential under ROLE and print it with its lease",
                   .example = "keyward database creds app",
                   .flags = {}},
                  DatabaseCreds));
  AddPkiCommands(commands);
  AddAuditCommands(commands);
}

}  // namespace kw::cli
