#include "cli/audit_commands.hpp"

#include <algorithm>
#include <initializer_list>
#include <optional>
#include <ostream>
#include <string>
#include <utility>

#include "cli/audit_support.hpp"
#include "cli/client_commands.hpp"
#include "cli/command_support.hpp"

namespace kw::cli {

namespace {

using detail::GetData;
using detail::RejectPositional;

constexpr std::uint64_t kDefaultQueryLimit = 100;
constexpr std::uint64_t kQueryPageLimit = 1000;

const FlagSpec kOutputFlag{"o", true,
                           "save to FILE (through FILE.tmp and a rename) instead of printing"};

// Writes `text` to the -o file when given, else to stdout.
int Output(Context& context, const Args& args, const std::string& text,
           std::string_view description) {
  const std::optional<std::string> path = args.last("o");
  if (!path) {
    context.out << text;
    return kExitOk;
  }
  if (Status written = detail::WriteFileAtomically(*path, text, 0644); !written) {
    return ReportFailure(written.error(), context.err);
  }
  context.out << "Saved " << description << " to " << *path << "\n";
  return kExitOk;
}

// True when the reply is to be printed as text of its own (a note, a key, a table) rather
// than through PrintResponse.
bool PrintsText(const Globals& globals) {
  return globals.format == OutputFormat::kTable && globals.field.empty();
}

int VerifyOnline(Context& context) {
  Connection connection(context.globals);
  Result<nlohmann::json> data = GetData(connection, "sys/audit/verify");
  if (!data) {
    ReportFailure(data.error(), context.err);
    if (data.error().code() == Code::kPermissionDenied) {
      context.err << "hint: audit verify on the server needs the root token\n";
    }
    return kExitError;
  }
  const bool ok = data->value("ok", false);
  if (!PrintsText(context.globals)) {
    const int printed =
        PrintResponse(context.globals, nlohmann::json{{"data", *data}}, context.out, context.err);
    return ok ? printed : kExitError;
  }

  std::ostream& out = context.out;
  out << "Verified              " << (ok ? "true" : "false") << "\n"
      << "Records checked       " << data->value("records_checked", 0) << "\n"
      << "Head sequence         " << data->value("head_sequence", 0) << "\n";
  if (data->contains("tree_size")) {
    out << "Tree size             " << data->value("tree_size", 0) << "\n"
        << "Root                  " << data->value("root", "") << "\n"
        << "Checkpoints verified  " << data->value("checkpoints_verified", 0) << "\n";
  }
  if (!ok) {
    out << "First broken          " << data->value("first_broken_sequence", nlohmann::json()).dump()
        << "\n"
        << "Reason                " << data->value("reason", "") << "\n";
  }
  return ok ? kExitOk : kExitError;
}

int Verify(Context& context, const Args& args, const Command& command) {
  if (auto rejected = RejectPositional(context, args, command)) return *rejected;
  if (args.has("log")) return detail::RunOfflineVerify(context, args, command);
  if (!args.values.empty()) {
    return ReportUsage("-key, -checkpoint, -old-checkpoint and -proof need -log", command,
                       context.err);
  }
  return VerifyOnline(context);
}

int Export(Context& context, const Args& args, const Command& command) {
  if (auto rejected = RejectPositional(context, args, command)) return *rejected;
  if (!args.has("o")) return ReportUsage("-o FILE is required", command, context.err);
  Connection connection(context.globals);
  return detail::RunExport(context, connection, *args.last("o"));
}

// Fetches GET `path` and prints its string field `field` (the -o file gets the same text),
// or the whole data object with -format=json|yaml or -field.
int FetchDocument(Context& context, const Args& args, const Command& command,
                  const std::string& path, const std::string& field) {
  if (auto rejected = RejectPositional(context, args, command)) return *rejected;
  Connection connection(context.globals);
  Result<nlohmann::json> data = GetData(connection, path);
  if (!data) return ReportFailure(data.error(), context.err);
  if (!data->contains(field) || !(*data)[field].is_string()) {
    return ReportFailure(Error(Code::kDataLoss, "GET " + path + ": the reply has no " + field),
                         context.err);
  }
  std::string text = (*data)[field].get<std::string>();
  if (!text.ends_with("\n")) text += "\n";
  if (!args.has("o") && !PrintsText(context.globals)) {
    return PrintResponse(context.globals, nlohmann::json{{"data", *data}}, context.out,
                         context.err);
  }
  std::string description = "the checkpoint key";
  if (field == "checkpoint") {
    description =
        "the checkpoint for size " + std::to_string(data->value("size", std::uint64_t{0}));
  }
  return Output(context, args, text, description);
}

int Proof(Context& context, const Args& args, const Command& command) {
  if (args.positional.empty()) {
    return ReportUsage("missing proof type (consistency)", command, context.err);
  }
  if (args.positional.front() != "consistency") {
    return ReportUsage(
        "unknown proof type \"" + args.positional.front() + "\" (expected consistency)", command,
        context.err);
  }
  if (args.positional.size() > 1) {
    return ReportUsage("unexpected argument \"" + args.positional[1] + "\"", command, context.err);
  }
  if (!args.has("first") || !args.has("second")) {
    return ReportUsage("-first and -second are required", command, context.err);
  }
  Result<std::uint64_t> first = detail::ParseCount("first", *args.last("first"));
  if (!first) return ReportUsage(first.error().message(), command, context.err);
  Result<std::uint64_t> second = detail::ParseCount("second", *args.last("second"));
  if (!second) return ReportUsage(second.error().message(), command, context.err);

  Connection connection(context.globals);
  Result<nlohmann::json> data =
      GetData(connection, "sys/audit/proof/consistency",
              {{"first", std::to_string(*first)}, {"second", std::to_string(*second)}});
  if (!data) return ReportFailure(data.error(), context.err);
  // The saved file and the default output keep the reply's {"data": ...} envelope, which
  // `keyward audit verify -proof` reads.
  const nlohmann::json reply = {{"data", *data}};
  if (!args.has("o") && !PrintsText(context.globals)) {
    return PrintResponse(context.globals, reply, context.out, context.err);
  }
  const std::string description = "the consistency proof from size " + std::to_string(*first) +
                                  " to " + std::to_string(*second);
  return Output(context, args, reply.dump(2) + "\n", description);
}

void PrintRecords(std::ostream& out, const std::vector<nlohmann::json>& records) {
  std::vector<std::vector<std::string>> rows;
  for (const nlohmann::json& record : records) {
    rows.push_back({std::to_string(record.value("seq", std::uint64_t{0})), record.value("time", ""),
                    std::to_string(record.value("status", 0)), record.value("method", ""),
                    record.value("accessor", ""), record.value("path", "")});
  }
  PrintTable(out, {"SEQ", "TIME", "STATUS", "METHOD", "ACCESSOR", "PATH"}, rows);
}

// Returns the query parameters of the filter flags that were given.
httplib::Params QueryFilters(const Args& args) {
  httplib::Params filters;
  for (const auto& [flag, parameter] :
       std::initializer_list<std::pair<std::string, std::string>>{{"from", "from"},
                                                                  {"to", "to"},
                                                                  {"accessor", "accessor"},
                                                                  {"spiffe-id", "spiffe_id"},
                                                                  {"path-prefix", "path_prefix"},
                                                                  {"status", "status"}}) {
    if (const std::optional<std::string> value = args.last(flag)) {
      filters.emplace(parameter, *value);
    }
  }
  return filters;
}

int Query(Context& context, const Args& args, const Command& command) {
  if (auto rejected = RejectPositional(context, args, command)) return *rejected;
  // NOTE: the records print as a table or a JSON array only, so -format=yaml and -field are
  // rejected as usage errors.
  if (context.globals.format == OutputFormat::kYaml) {
    return ReportUsage("-format must be table or json for audit query", command, context.err);
  }
  if (!context.globals.field.empty()) {
    return ReportUsage("-field does not apply to audit query; use -format=json", command,
                       context.err);
  }
  std::uint64_t limit = kDefaultQueryLimit;
  if (args.has("limit")) {
    Result<std::uint64_t> parsed = detail::ParseCount("limit", *args.last("limit"));
    if (!parsed || *parsed == 0) {
      return ReportUsage("-limit must be at least 1", command, context.err);
    }
    limit = *parsed;
  }
  const httplib::Params filters = QueryFilters(args);

  // The server examines a bounded number of records per call and returns `next` to continue,
  // so a call may return fewer records than asked, or none.
  Connection connection(context.globals);
  std::vector<nlohmann::json> records;
  std::optional<std::uint64_t> after;
  while (records.size() < limit) {
    httplib::Params params = filters;
    params.emplace("limit", std::to_string(std::min(limit - records.size(), kQueryPageLimit)));
    if (after) params.emplace("after", std::to_string(*after));
    Result<nlohmann::json> data = GetData(connection, "sys/audit/records", params);
    if (!data) return ReportFailure(data.error(), context.err);
    if (!data->contains("records") || !(*data)["records"].is_array()) {
      return ReportFailure(Error(Code::kDataLoss, "GET sys/audit/records: no records list"),
                           context.err);
    }
    for (nlohmann::json& record : (*data)["records"]) {
      if (records.size() < limit) records.push_back(std::move(record));
    }
    const auto next = data->find("next");
    if (next == data->end() || !next->is_number_unsigned()) break;
    after = next->get<std::uint64_t>();
  }

  if (context.globals.format == OutputFormat::kJson) {
    context.out << nlohmann::json(records).dump(2) << "\n";
  } else {
    PrintRecords(context.out, records);
  }
  return kExitOk;
}

}  // namespace

void AddAuditCommands(std::vector<Command>& commands) {
  commands.push_back(MakeCommand(
      {.name = "audit verify",
       .usage = "keyward audit verify [-log FILE ... -key VKEY|@FILE -checkpoint FILE "
                "[-old-checkpoint FILE [-proof FILE]]]",
       .summary =
           "Check the audit log on the server (root token), or offline over exported files (-log)",
       .example = "keyward audit verify -log audit.jsonl -key @audit.vkey -checkpoint latest.ckpt",
       .flags = {{"log", true,
                  "a JSON-lines file (an export, an archive of pruned records or a file sink's "
                  "file); repeat in log order, archives first"},
                 {"key", true,
                  "the checkpoint key that keyward audit public-key prints, or @FILE; "
                  "repeatable"},
                 {"checkpoint", true,
                  "a checkpoint saved with keyward audit checkpoint -o, or the JSON reply of GET "
                  "sys/audit/checkpoint"},
                 {"old-checkpoint", true,
                  "an older saved checkpoint; the records must match it too"},
                 {"proof", true,
                  "the consistency proof from -old-checkpoint's size to -checkpoint's size "
                  "(keyward audit proof consistency -o)"}}},
      Verify));
  commands.push_back(MakeCommand(
      {.name = "audit export",
       .usage = "keyward audit export -o FILE",
       .summary = "Write every stored record and checkpoint to a file (sudo on sys/audit/records)",
       .example = "keyward audit export -o audit.jsonl",
       .flags = {{"o", true, "the output file, created with mode 0600"}}},
      Export));
  commands.push_back(MakeCommand(
      {.name = "audit checkpoint",
       .usage = "keyward audit checkpoint [-o FILE]",
       .summary = "Print or save the latest signed checkpoint, to verify the log against later",
       .example = "keyward audit checkpoint -o audit-2026-05-28.ckpt",
       .flags = {kOutputFlag}},
      [](Context& context, const Args& args, const Command& command) {
        return FetchDocument(context, args, command, "sys/audit/checkpoint", "checkpoint");
      }));
  commands.push_back(MakeCommand(
      {.name = "audit public-key",
       .usage = "keyward audit public-key [-o FILE]",
       .summary = "Print or save the verifier key (vkey) that checks checkpoint signatures",
       .example = "keyward audit public-key -o audit.vkey",
       .flags = {kOutputFlag}},
      [](Context& context, const Args& args, const Command& command) {
        return FetchDocument(context, args, command, "sys/audit/public-key", "vkey");
      }));
  commands.push_back(MakeCommand(
      {.name = "audit proof",
       .usage = "keyward audit proof consistency -first M -second N [-o FILE]",
       .summary = "Fetch the RFC 9162 consistency proof between tree sizes M and N",
       .example = "keyward audit proof consistency -first 1200 -second 5000 -o proof.json",
       .flags = {{"first", true, "the smaller tree size, at least 1"},
                 {"second", true, "the larger tree size"},
                 kOutputFlag}},
      Proof));
  commands.push_back(MakeCommand(
      {.name = "audit query",
       .usage = "keyward audit query [-from T] [-to T] [-accessor A] [-spiffe-id ID] "
                "[-path-prefix P] [-status S] [-limit N]",
       .summary = "List the audit records that match every filter, oldest first (sudo)",
       .example = "keyward audit query -accessor 8f3c... -status 4xx -from 2026-05-28T00:00:00Z",
       .flags = {{"from", true, "records at or after T (RFC 3339, such as 2026-05-28T20:00:00Z)"},
                 {"to", true, "records before T (RFC 3339)"},
                 {"accessor", true,
                  "records of the token with accessor A and of tokens created from it"},
                 {"spiffe-id", true,
                  "records of clients whose TLS certificate carries this SPIFFE ID"},
                 {"path-prefix", true, "records whose path starts with P (whole segments)"},
                 {"status", true, "an HTTP status (403) or a class (4xx)"},
                 {"limit", true, "the maximum number of records to list (default 100)"}}},
      Query));
}

int RunAudit(const ServerTarget& server, const std::vector<std::string>& args) {
  std::vector<std::string> command_line = {"audit"};
  command_line.insert(command_line.end(), args.begin(), args.end());
  command_line.push_back("-address=" + server.address);
  if (!server.token.empty()) command_line.push_back("-token=" + server.token);
  return RunClient(command_line);
}

}  // namespace kw::cli
