// The `kv` commands: KV version 2 with Vault's CLI semantics. The user names a secret as
// MOUNT/PATH or as -mount=MOUNT PATH, and the commands insert data/, metadata/, delete/,
// undelete/ or destroy/ after the mount.
#include <algorithm>
#include <charconv>
#include <iostream>

#include "cli/cli.hpp"
#include "cli/command_support.hpp"

namespace kw::cli {
namespace {

// A secret's location: mount "secret" and path "app/db" for secret/app/db.
struct KvPath {
  std::string mount;
  std::string path;

  // The API path for `action` (data, metadata, ...): secret/data/app/db.
  std::string Api(std::string_view action) const {
    return mount + "/" + std::string(action) + "/" + path;
  }
  // The name the user gave: secret/app/db.
  std::string Display() const { return path.empty() ? mount : mount + "/" + path; }
};

std::string TrimSlashes(std::string_view text) {
  while (text.starts_with('/')) text.remove_prefix(1);
  while (text.ends_with('/')) text.remove_suffix(1);
  return std::string(text);
}

// Reads the secret's location from -mount and the single positional argument.
// NOTE: without -mount the first path segment is the mount; a mount whose name contains a slash
// needs -mount.
Result<KvPath> ResolveKvPath(const Args& args, bool allow_empty_path) {
  if (args.positional.size() != 1) return InvalidArgument("expected one PATH");
  const std::string given = TrimSlashes(args.positional[0]);
  KvPath location;
  if (const auto mount = args.last("mount")) {
    location.mount = TrimSlashes(*mount);
    location.path = given;
  } else {
    const std::size_t slash = given.find('/');
    location.mount = given.substr(0, slash);
    location.path = slash == std::string::npos ? "" : given.substr(slash + 1);
  }
  if (location.mount.empty()) return InvalidArgument("missing mount: give MOUNT/PATH or -mount");
  if (location.path.empty() && !allow_empty_path) {
    return InvalidArgument("missing secret path after the mount: give " + location.mount +
                           "/PATH or -mount=" + location.mount + " PATH");
  }
  return location;
}

Result<std::int64_t> ParseCount(std::string_view flag, std::string_view text) {
  std::int64_t value = -1;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value < 0) {
    return InvalidArgument("invalid -" + std::string(flag) + " \"" + std::string(text) +
                           "\": expected a non-negative integer");
  }
  return value;
}

// Parses -versions: comma-separated positive integers, the flag repeatable.
Result<std::vector<std::int64_t>> ParseVersions(const Args& args) {
  std::vector<std::int64_t> versions;
  for (const std::string& list : args.all("versions")) {
    std::string_view rest = list;
    while (!rest.empty()) {
      const std::size_t comma = rest.find(',');
      KW_ASSIGN_OR_RETURN(std::int64_t version, ParseCount("versions", rest.substr(0, comma)));
      if (version == 0) return InvalidArgument("invalid -versions: versions start at 1");
      versions.push_back(version);
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
  }
  return versions;
}

// Adds options.cas to `body` when -cas is given.
Status AddCas(const Args& args, nlohmann::json& body) {
  const auto text = args.last("cas");
  if (!text) return OkStatus();
  KW_ASSIGN_OR_RETURN(std::int64_t cas, ParseCount("cas", *text));
  body["options"] = {{"cas", cas}};
  return OkStatus();
}

// Prints the fields of `object` as a Key/Value table under a "== title ==" line.
void PrintSection(std::ostream& out, std::string_view title, const nlohmann::json& object) {
  out << "== " << title << " ==\n";
  std::vector<std::vector<std::string>> rows;
  if (object.is_object()) {
    for (const auto& [key, value] : object.items()) rows.push_back({key, CellText(value)});
  }
  PrintTable(out, {"Key", "Value"}, rows);
}

bool TableOutput(const Globals& globals) {
  return globals.format == OutputFormat::kTable && globals.field.empty();
}

Result<HttpReply> Send(Context& context, std::string_view method, const std::string& path,
                       const nlohmann::json& body = nullptr, const httplib::Params& query = {}) {
  Connection connection(context.globals);
  return connection.Send(method, path, body, query);
}

// Reports a reply that is not 2xx; a 404 without messages means there is no such secret.
int ReportKvError(const HttpReply& reply, std::string_view action, const KvPath& location,
                  std::ostream& err) {
  const nlohmann::json& errors = Member(reply.json, "errors");
  const bool has_messages = errors.is_array() && !errors.empty();
  if (reply.status == 404 && !has_messages) {
    err << "error: " << action << ": no secret at " << location.Display() << "\n";
    return kExitError;
  }
  return ReportServerError(reply, action, err);
}

// ---- get, put, patch ----

// Prints a version that is deleted or destroyed: its metadata, and why there is no data.
int ReportUnreadableVersion(Context& context, const nlohmann::json& metadata,
                            const KvPath& location) {
  if (TableOutput(context.globals)) PrintSection(context.out, "Metadata", metadata);
  const std::string version = CellText(metadata.value("version", nlohmann::json(0)));
  const bool destroyed = metadata.value("destroyed", false);
  context.err << "error: version " << version << " of " << location.Display() << " is "
              << (destroyed ? "destroyed" : "deleted");
  if (!destroyed) {
    context.err << ": `keyward kv undelete -versions=" << version << " " << location.Display()
                << "` restores it";
  }
  context.err << "\n";
  return kExitError;
}

int RunKvGet(Context& context, const Args& args, const Command& command) {
  auto location = ResolveKvPath(args, false);
  if (!location) return ReportUsage(location.error().message(), command, context.err);
  httplib::Params query;
  if (const auto version = args.last("version")) {
    auto parsed = ParseCount("version", *version);
    if (!parsed) return ReportUsage(parsed.error().message(), command, context.err);
    query.emplace("version", std::to_string(*parsed));
  }
  auto reply = Send(context, "GET", location->Api("data"), nullptr, query);
  if (!reply) return ReportFailure(reply.error(), context.err);

  const nlohmann::json& json = reply->json;
  const nlohmann::json& metadata = Member(Member(json, "data"), "metadata");
  const nlohmann::json& data = Member(Member(json, "data"), "data");
  if (reply->status == 404 && metadata.is_object()) {
    return ReportUnreadableVersion(context, metadata, *location);
  }
  if (reply->status != 200 || !metadata.is_object() || !data.is_object()) {
    return ReportKvError(*reply, "reading " + location->Display(), *location, context.err);
  }
  // Like Vault's kv get, -field names a key of the secret, not of the {data, metadata} object.
  if (!context.globals.field.empty()) {
    nlohmann::json secret = json;
    secret["data"] = data;
    return PrintResponse(context.globals, secret, context.out, context.err);
  }
  if (!TableOutput(context.globals)) {
    return PrintResponse(context.globals, json, context.out, context.err);
  }
  context.out << "== Secret Path ==\n" << location->Api("data") << "\n\n";
  PrintSection(context.out, "Metadata", metadata);
  context.out << "\n";
  PrintSection(context.out, "Data", data);
  return kExitOk;
}

// Prints the version metadata that put and patch return.
int PrintWritten(Context& context, const HttpReply& reply, const KvPath& location) {
  if (TableOutput(context.globals)) {
    context.out << "== Secret Path ==\n" << location.Api("data") << "\n\n";
    PrintSection(context.out, "Metadata", Member(reply.json, "data"));
    return kExitOk;
  }
  return PrintResponse(context.globals, reply.json, context.out, context.err);
}

// Builds {"data": ..., "options": {"cas": N}} from the data arguments after PATH and -cas.
Result<nlohmann::json> WriteBody(Context& context, const Args& args,
                                 std::span<const std::string> pairs) {
  if (pairs.empty()) {
    return InvalidArgument("no data: give key=value, key=@FILE, key=- or - (a JSON object on "
                           "stdin)");
  }
  KW_ASSIGN_OR_RETURN(nlohmann::json data,
                      ParseDataArgs(pairs, context.in, context.err, args.on("allow-argv")));
  nlohmann::json body = {{"data", std::move(data)}};
  KW_RETURN_IF_ERROR(AddCas(args, body));
  return body;
}

// Splits the positional arguments of put and patch into PATH and the data arguments.
Result<std::pair<KvPath, std::vector<std::string>>> PathAndPairs(const Args& args) {
  if (args.positional.empty()) return InvalidArgument("missing PATH");
  Args path_only = args;
  path_only.positional.resize(1);
  KW_ASSIGN_OR_RETURN(KvPath location, ResolveKvPath(path_only, false));
  std::vector<std::string> pairs(args.positional.begin() + 1, args.positional.end());
  return std::make_pair(std::move(location), std::move(pairs));
}

int RunKvPut(Context& context, const Args& args, const Command& command) {
  auto parsed = PathAndPairs(args);
  if (!parsed) return ReportUsage(parsed.error().message(), command, context.err);
  const auto& [location, pairs] = *parsed;
  auto body = WriteBody(context, args, pairs);
  if (!body) return ReportUsage(body.error().message(), command, context.err);

  auto reply = Send(context, "POST", location.Api("data"), *body);
  if (!reply) return ReportFailure(reply.error(), context.err);
  if (reply->status != 200 || !reply->json.is_object()) {
    return ReportKvError(*reply, "writing " + location.Display(), location, context.err);
  }
  return PrintWritten(context, *reply, location);
}

int RunKvPatch(Context& context, const Args& args, const Command& command) {
  auto parsed = PathAndPairs(args);
  if (!parsed) return ReportUsage(parsed.error().message(), command, context.err);
  const auto& [location, pairs] = *parsed;
  auto body = WriteBody(context, args, pairs);
  if (!body) return ReportUsage(body.error().message(), command, context.err);

  // The server takes PATCH only as a JSON merge patch (RFC 7386).
  RawBody patch;
  patch.bytes = body->dump();
  patch.content_type = "application/merge-patch+json";
  Connection connection(context.globals);
  auto sent = connection.SendRaw("PATCH", location.Api("data"), patch);
  if (!sent) return ReportFailure(sent.error(), context.err);
  const HttpReply& reply = *sent;
  if (reply.status != 200 || !reply.json.is_object()) {
    return ReportKvError(reply, "patching " + location.Display(), location, context.err);
  }
  return PrintWritten(context, reply, location);
}

// ---- list, delete, undelete, destroy ----

int RunKvList(Context& context, const Args& args, const Command& command) {
  auto location = ResolveKvPath(args, true);
  if (!location) return ReportUsage(location.error().message(), command, context.err);
  auto reply = Send(context, "LIST", location->Api("metadata"));
  if (!reply) return ReportFailure(reply.error(), context.err);
  if (!IsSuccess(reply->status)) {
    return ReportKvError(*reply, "listing " + location->Display(), *location, context.err);
  }
  return PrintList(context.globals, reply->json, context.out, context.err);
}

int RunKvDelete(Context& context, const Args& args, const Command& command) {
  auto location = ResolveKvPath(args, false);
  if (!location) return ReportUsage(location.error().message(), command, context.err);
  auto versions = ParseVersions(args);
  if (!versions) return ReportUsage(versions.error().message(), command, context.err);

  // Without -versions the latest version is deleted, as in Vault.
  Result<HttpReply> reply = versions->empty()
                                ? Send(context, "DELETE", location->Api("data"))
                                : Send(context, "POST", location->Api("delete"),
                                       {{"versions", *versions}});
  if (!reply) return ReportFailure(reply.error(), context.err);
  if (!IsSuccess(reply->status)) {
    return ReportKvError(*reply, "deleting " + location->Display(), *location, context.err);
  }
  return PrintSuccess(context.globals, "Data deleted (if it existed) at: " + location->Display(),
                      context.out);
}

// Runs undelete or destroy, which both need -versions.
int RunVersionAction(Context& context, const Args& args, const Command& command,
                     std::string_view action, std::string_view done) {
  auto location = ResolveKvPath(args, false);
  if (!location) return ReportUsage(location.error().message(), command, context.err);
  auto versions = ParseVersions(args);
  if (!versions) return ReportUsage(versions.error().message(), command, context.err);
  if (versions->empty()) return ReportUsage("missing -versions", command, context.err);

  auto reply = Send(context, "POST", location->Api(action), {{"versions", *versions}});
  if (!reply) return ReportFailure(reply.error(), context.err);
  if (!IsSuccess(reply->status)) {
    return ReportKvError(*reply, std::string(action) + " " + location->Display(), *location,
                         context.err);
  }
  std::string list;
  for (std::int64_t version : *versions) {
    list += (list.empty() ? "" : ",") + std::to_string(version);
  }
  const std::string noun = versions->size() == 1 ? "Version " : "Versions ";
  return PrintSuccess(context.globals,
                      noun + list + " of " + location->Display() + " " + std::string(done),
                      context.out);
}

// ---- metadata ----

int RunKvMetadataGet(Context& context, const Args& args, const Command& command) {
  auto location = ResolveKvPath(args, false);
  if (!location) return ReportUsage(location.error().message(), command, context.err);
  auto reply = Send(context, "GET", location->Api("metadata"));
  if (!reply) return ReportFailure(reply.error(), context.err);
  if (reply->status != 200 || !Member(reply->json, "data").is_object()) {
    return ReportKvError(*reply, "reading the metadata of " + location->Display(), *location,
                         context.err);
  }
  if (!TableOutput(context.globals)) {
    return PrintResponse(context.globals, reply->json, context.out, context.err);
  }
  nlohmann::json metadata = Member(reply->json, "data");
  nlohmann::json versions = metadata.value("versions", nlohmann::json::object());
  metadata.erase("versions");
  context.out << "== Metadata Path ==\n" << location->Api("metadata") << "\n\n";
  PrintSection(context.out, "Metadata", metadata);
  // Versions in numeric order, not the text order of the JSON keys ("10" before "2").
  std::vector<std::pair<std::int64_t, std::string>> order;
  for (const auto& [key, value] : versions.items()) {
    std::int64_t number = 0;
    std::from_chars(key.data(), key.data() + key.size(), number);
    order.emplace_back(number, key);
  }
  std::sort(order.begin(), order.end());
  for (const auto& [number, key] : order) {
    context.out << "\n";
    PrintSection(context.out, "Version " + key, versions[key]);
  }
  return kExitOk;
}

// Builds the metadata put body from the flags that were given; absent flags leave the stored
// settings unchanged.
Result<nlohmann::json> MetadataBody(const Args& args) {
  nlohmann::json body = nlohmann::json::object();
  if (const auto text = args.last("max-versions")) {
    KW_ASSIGN_OR_RETURN(std::int64_t max_versions, ParseCount("max-versions", *text));
    body["max_versions"] = max_versions;
  }
  if (args.has("cas-required")) body["cas_required"] = args.on("cas-required");
  if (const auto text = args.last("delete-version-after")) body["delete_version_after"] = *text;
  if (args.has("custom-metadata")) {
    nlohmann::json custom = nlohmann::json::object();
    for (const std::string& pair : args.all("custom-metadata")) {
      const std::size_t equals = pair.find('=');
      if (equals == std::string::npos || equals == 0) {
        return InvalidArgument("invalid -custom-metadata \"" + pair + "\": expected key=value");
      }
      custom[pair.substr(0, equals)] = pair.substr(equals + 1);
    }
    body["custom_metadata"] = std::move(custom);
  }
  return body;
}

int RunKvMetadataPut(Context& context, const Args& args, const Command& command) {
  auto location = ResolveKvPath(args, false);
  if (!location) return ReportUsage(location.error().message(), command, context.err);
  auto body = MetadataBody(args);
  if (!body) return ReportUsage(body.error().message(), command, context.err);
  auto reply = Send(context, "POST", location->Api("metadata"), *body);
  if (!reply) return ReportFailure(reply.error(), context.err);
  if (!IsSuccess(reply->status)) {
    return ReportKvError(*reply, "writing the metadata of " + location->Display(), *location,
                         context.err);
  }
  return PrintSuccess(context.globals, "Metadata written to: " + location->Api("metadata"),
                      context.out);
}

int RunKvMetadataDelete(Context& context, const Args& args, const Command& command) {
  auto location = ResolveKvPath(args, false);
  if (!location) return ReportUsage(location.error().message(), command, context.err);
  auto reply = Send(context, "DELETE", location->Api("metadata"));
  if (!reply) return ReportFailure(reply.error(), context.err);
  if (!IsSuccess(reply->status)) {
    return ReportKvError(*reply, "deleting the metadata of " + location->Display(), *location,
                         context.err);
  }
  return PrintSuccess(context.globals,
                      "Data and every version deleted (if they existed) at: " +
                          location->Api("metadata"),
                      context.out);
}

const FlagSpec kMountFlag = {"mount", true, "KV mount; then PATH is relative to it"};
const FlagSpec kAllowArgvFlag = {
    "allow-argv", false,
    "accept a secret-looking key=value given as a plain argument (shell history keeps it)"};
const FlagSpec kCasFlag = {"cas", true,
                           "check-and-set: write only if the current version is this number "
                           "(0: only if the secret does not exist)"};
const FlagSpec kVersionsFlag = {"versions", true, "comma-separated version numbers"};

}  // namespace

void AddKvCommands(std::vector<Command>& commands) {
  commands.push_back(MakeCommand(
      {.name = "kv get",
       .usage = "keyward kv get [flags] MOUNT/PATH",
       .summary = "Read a secret (the latest version, or -version=N)",
       .example = "keyward kv get -field=password secret/app/db",
       .flags = {kMountFlag, {"version", true, "version to read (default: the latest)"}}},
      RunKvGet));
  commands.push_back(MakeCommand(
      {.name = "kv put",
       .usage = "keyward kv put [flags] MOUNT/PATH key=value ... | -",
       .summary = "Write a new version of a secret, replacing all of its data",
       .example = "keyward kv put secret/app/db user=web password=@db-password.txt",
       .flags = {kMountFlag, kCasFlag, kAllowArgvFlag}},
      RunKvPut));
  commands.push_back(MakeCommand(
      {.name = "kv patch",
       .usage = "keyward kv patch [flags] MOUNT/PATH key=value ... | -",
       .summary = "Write a new version that changes only the given keys (JSON merge patch)",
       .example = "keyward kv patch secret/app/db port=5433",
       .flags = {kMountFlag, kCasFlag, kAllowArgvFlag}},
      RunKvPatch));
  commands.push_back(MakeCommand(
      {.name = "kv list",
       .usage = "keyward kv list [flags] MOUNT[/PATH]",
       .summary = "List the secrets and folders under a path",
       .example = "keyward kv list secret/app",
       .flags = {kMountFlag}},
      RunKvList));
  commands.push_back(MakeCommand(
      {.name = "kv delete",
       .usage = "keyward kv delete [flags] MOUNT/PATH",
       .summary = "Delete the latest version, or -versions, so that reads fail until undelete",
       .example = "keyward kv delete -versions=1,2 secret/app/db",
       .flags = {kMountFlag, kVersionsFlag}},
      RunKvDelete));
  commands.push_back(MakeCommand(
      {.name = "kv undelete",
       .usage = "keyward kv undelete -versions=N[,N...] [flags] MOUNT/PATH",
       .summary = "Restore deleted versions",
       .example = "keyward kv undelete -versions=2 secret/app/db",
       .flags = {kMountFlag, kVersionsFlag}},
      [](Context& context, const Args& args, const Command& command) {
        return RunVersionAction(context, args, command, "undelete", "restored");
      }));
  commands.push_back(MakeCommand(
      {.name = "kv destroy",
       .usage = "keyward kv destroy -versions=N[,N...] [flags] MOUNT/PATH",
       .summary = "Wipe the data of versions for good; undelete cannot restore them",
       .example = "keyward kv destroy -versions=1 secret/app/db",
       .flags = {kMountFlag, kVersionsFlag}},
      [](Context& context, const Args& args, const Command& command) {
        return RunVersionAction(context, args, command, "destroy", "destroyed");
      }));
  commands.push_back(MakeCommand(
      {.name = "kv metadata get",
       .usage = "keyward kv metadata get [flags] MOUNT/PATH",
       .summary = "Read a secret's settings and the state of every version",
       .example = "keyward kv metadata get secret/app/db",
       .flags = {kMountFlag}},
      RunKvMetadataGet));
  commands.push_back(MakeCommand(
      {.name = "kv metadata put",
       .usage = "keyward kv metadata put [flags] MOUNT/PATH",
       .summary = "Change a secret's settings; flags not given stay as they are",
       .example = "keyward kv metadata put -max-versions=5 -custom-metadata=owner=ops "
                  "secret/app/db",
       .flags = {kMountFlag,
                 {"max-versions", true, "versions to keep; 0: the mount's setting"},
                 {"cas-required", false, "require -cas on every write (=false to turn off)"},
                 {"delete-version-after", true,
                  "delete versions this long after writing: 30s, 1h30m, 0 (never)"},
                 {"custom-metadata", true,
                  "key=value, repeatable; replaces all custom metadata"}}},
      RunKvMetadataPut));
  commands.push_back(MakeCommand(
      {.name = "kv metadata delete",
       .usage = "keyward kv metadata delete [flags] MOUNT/PATH",
       .summary = "Delete a secret with every version and its metadata",
       .example = "keyward kv metadata delete secret/app/db",
       .flags = {kMountFlag}},
      RunKvMetadataDelete));
}

}  // namespace kw::cli
