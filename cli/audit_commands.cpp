#include "cli/audit_commands.hpp"

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <span>

#include "cli/audit_support.hpp"

namespace kw::cli {

namespace {

using detail::ApiClient;
using detail::kExitFailure;
using detail::kExitOk;
using detail::kExitUsage;
using detail::ParsedFlags;
using detail::PrintFailure;
using detail::PrintUsageError;

constexpr std::string_view kAuditHelp =
    "Usage: keyward audit <subcommand> [flags]\n"
    "\n"
    "Subcommands:\n"
    "  verify             check the audit log, on the server or offline over exported files\n"
    "  export             write every record and checkpoint to a JSON-lines file\n"
    "  checkpoint         print or save the latest signed checkpoint\n"
    "  public-key         print or save the key (vkey) that verifies checkpoints\n"
    "  proof consistency  fetch the consistency proof between two tree sizes\n"
    "  query              list records by time, accessor, SPIFFE ID, path and status\n"
    "\n"
    "Run keyward audit <subcommand> -help for its flags. Commands that call the server take\n"
    "-address=URL (KEYWARD_ADDR, VAULT_ADDR) and -token=TOKEN (KEYWARD_TOKEN, VAULT_TOKEN);\n"
    "https addresses trust the CA file in KEYWARD_CACERT or VAULT_CACERT.\n"
    "Example: keyward audit checkpoint -o audit-2026-05-28.ckpt\n";

constexpr std::string_view kVerifyHelp =
    "Usage: keyward audit verify\n"
    "       keyward audit verify -log FILE [-log FILE ...] -key VKEY|@FILE -checkpoint FILE\n"
    "                            [-old-checkpoint FILE [-proof FILE]]\n"
    "\n"
    "Without -log, the server recomputes its stored log (GET sys/audit/verify, root token).\n"
    "With -log, the files are verified offline, without server or HSM: sequence numbers, the\n"
    "prev_hash chain, canonical JSON, and that every checkpoint, signed by -key, names the\n"
    "Merkle root of the records up to its size.\n"
    "\n"
    "  -log FILE             a JSON-lines file: an export, an archive of pruned records or a\n"
    "                        file sink's file; repeat in log order, archives first\n"
    "  -key VKEY|@FILE       the checkpoint key that keyward audit public-key prints;\n"
    "                        repeatable\n"
    "  -checkpoint FILE      a checkpoint saved with keyward audit checkpoint -o, or the JSON\n"
    "                        reply of GET sys/audit/checkpoint\n"
    "  -old-checkpoint FILE  an older saved checkpoint; the records must match it too\n"
    "  -proof FILE           the consistency proof from -old-checkpoint's size to\n"
    "                        -checkpoint's size (keyward audit proof consistency -o)\n"
    "\n"
    "Exit status: 0 the log verifies, 1 it does not (the first problem names its record),\n"
    "2 a usage error.\n"
    "Example: keyward audit verify -log audit.jsonl -key @audit.vkey -checkpoint latest.ckpt\n";

constexpr std::string_view kExportHelp =
    "Usage: keyward audit export -o FILE\n"
    "\n"
    "Writes every record still stored (one canonical JSON record per line) and every stored\n"
    "checkpoint (a {\"checkpoint\":...} line after the record of its size) to FILE, through\n"
    "FILE.tmp, fsync and rename. Needs a token with sudo on sys/audit/records and\n"
    "sys/audit/checkpoints.\n"
    "\n"
    "  -o FILE  the output file, created with mode 0600\n"
    "\n"
    "Example: keyward audit export -o audit.jsonl\n";

constexpr std::string_view kCheckpointHelp =
    "Usage: keyward audit checkpoint [-o FILE]\n"
    "\n"
    "Prints the latest signed checkpoint (a C2SP signed note: origin, tree size, base64 root\n"
    "and signature), or saves it to FILE. Keep saved checkpoints outside the server: they let\n"
    "keyward audit verify detect records changed, removed or cut off later.\n"
    "\n"
    "  -o FILE  save the note to FILE instead of printing it\n"
    "\n"
    "Example: keyward audit checkpoint -o audit-2026-05-28.ckpt\n";

constexpr std::string_view kPublicKeyHelp =
    "Usage: keyward audit public-key [-o FILE]\n"
    "\n"
    "Prints the verifier key (vkey: name+key ID+base64 key) that checks checkpoint signatures.\n"
    "\n"
    "  -o FILE  save the vkey to FILE instead of printing it\n"
    "\n"
    "Example: keyward audit public-key -o audit.vkey\n";

constexpr std::string_view kProofHelp =
    "Usage: keyward audit proof consistency -first M -second N [-o FILE]\n"
    "\n"
    "Fetches the RFC 9162 consistency proof that the tree of N records extends the tree of M\n"
    "records, as the JSON reply of GET sys/audit/proof/consistency.\n"
    "\n"
    "  -first M   the smaller tree size, at least 1\n"
    "  -second N  the larger tree size\n"
    "  -o FILE    save the reply to FILE instead of printing it\n"
    "\n"
    "Example: keyward audit proof consistency -first 1200 -second 5000 -o proof.json\n";

constexpr std::string_view kQueryHelp =
    "Usage: keyward audit query [-from T] [-to T] [-accessor A] [-spiffe-id ID]\n"
    "                           [-path-prefix P] [-status S] [-limit N] [-format table|json]\n"
    "\n"
    "Lists audit records that match every filter given, oldest first (GET sys/audit/records,\n"
    "sudo).\n"
    "\n"
    "  -from T         records at or after T (RFC 3339, such as 2026-05-28T20:00:00Z)\n"
    "  -to T           records before T (RFC 3339)\n"
    "  -accessor A     records of the token with accessor A and of tokens created from it\n"
    "  -spiffe-id ID   records of clients whose TLS certificate carries this SPIFFE ID\n"
    "  -path-prefix P  records whose path starts with P\n"
    "  -status S       an HTTP status (403) or a class (4xx)\n"
    "  -limit N        the maximum number of records to list (default 100)\n"
    "  -format F       table (default) or json (a JSON array of the records)\n"
    "\n"
    "Example: keyward audit query -accessor 8f3c... -status 4xx -from 2026-05-28T00:00:00Z\n";

constexpr std::uint64_t kDefaultQueryLimit = 100;
constexpr std::uint64_t kQueryPageLimit = 1000;

// Writes `text` to the -o file when given, else to stdout.
int Output(const ParsedFlags& flags, const std::string& text, std::string_view description) {
  const std::optional<std::string> path = flags.last("o");
  if (!path) {
    std::cout << text;
    return kExitOk;
  }
  if (Status written = detail::WriteFileAtomically(*path, text, 0644); !written) {
    return PrintFailure(written.error());
  }
  std::cout << "Saved " << description << " to " << *path << "\n";
  return kExitOk;
}

int VerifyOnline(ApiClient& api) {
  Result<nlohmann::json> data = api.GetData("sys/audit/verify");
  if (!data) {
    PrintFailure(data.error());
    if (data.error().code() == Code::kPermissionDenied) {
      std::cerr << "hint: audit verify on the server needs the root token\n";
    }
    return kExitFailure;
  }
  const bool ok = data->value("ok", false);
  std::cout << "Verified              " << (ok ? "true" : "false") << "\n"
            << "Records checked       " << data->value("records_checked", 0) << "\n"
            << "Head sequence         " << data->value("head_sequence", 0) << "\n";
  if (data->contains("tree_size")) {
    std::cout << "Tree size             " << data->value("tree_size", 0) << "\n"
              << "Root                  " << data->value("root", "") << "\n"
              << "Checkpoints verified  " << data->value("checkpoints_verified", 0) << "\n";
  }
  if (!ok) {
    std::cout << "First broken          "
              << data->value("first_broken_sequence", nlohmann::json()).dump() << "\n"
              << "Reason                " << data->value("reason", "") << "\n";
  }
  return ok ? kExitOk : kExitFailure;
}

int Verify(const ServerTarget& server, std::span<const std::string> args) {
  Result<ParsedFlags> flags =
      detail::ParseFlags(args, {"log", "key", "checkpoint", "old-checkpoint", "proof"});
  if (!flags) return PrintUsageError(flags.error().message(), kVerifyHelp);
  if (flags->help) {
    std::cout << kVerifyHelp;
    return kExitOk;
  }
  if (flags->has("log")) return detail::RunOfflineVerify(*flags, kVerifyHelp);
  if (!flags->values.empty()) {
    return PrintUsageError("-key, -checkpoint, -old-checkpoint and -proof need -log", kVerifyHelp);
  }
  ApiClient api(server);
  return VerifyOnline(api);
}

int Export(const ServerTarget& server, std::span<const std::string> args) {
  Result<ParsedFlags> flags = detail::ParseFlags(args, {"o"});
  if (!flags) return PrintUsageError(flags.error().message(), kExportHelp);
  if (flags->help) {
    std::cout << kExportHelp;
    return kExitOk;
  }
  if (!flags->has("o")) return PrintUsageError("-o FILE is required", kExportHelp);
  ApiClient api(server);
  return detail::RunExport(api, *flags->last("o"));
}

int Checkpoint(const ServerTarget& server, std::span<const std::string> args) {
  Result<ParsedFlags> flags = detail::ParseFlags(args, {"o"});
  if (!flags) return PrintUsageError(flags.error().message(), kCheckpointHelp);
  if (flags->help) {
    std::cout << kCheckpointHelp;
    return kExitOk;
  }
  ApiClient api(server);
  Result<nlohmann::json> data = api.GetData("sys/audit/checkpoint");
  if (!data) return PrintFailure(data.error());
  if (!data->contains("checkpoint") || !(*data)["checkpoint"].is_string()) {
    return PrintFailure(Error(Code::kDataLoss, "GET sys/audit/checkpoint: no checkpoint note"));
  }
  const std::string description =
      "the checkpoint for size " + std::to_string(data->value("size", std::uint64_t{0}));
  return Output(*flags, (*data)["checkpoint"].get<std::string>(), description);
}

int PublicKey(const ServerTarget& server, std::span<const std::string> args) {
  Result<ParsedFlags> flags = detail::ParseFlags(args, {"o"});
  if (!flags) return PrintUsageError(flags.error().message(), kPublicKeyHelp);
  if (flags->help) {
    std::cout << kPublicKeyHelp;
    return kExitOk;
  }
  ApiClient api(server);
  Result<nlohmann::json> data = api.GetData("sys/audit/public-key");
  if (!data) return PrintFailure(data.error());
  if (!data->contains("vkey") || !(*data)["vkey"].is_string()) {
    return PrintFailure(Error(Code::kDataLoss, "GET sys/audit/public-key: no vkey"));
  }
  return Output(*flags, (*data)["vkey"].get<std::string>() + "\n", "the checkpoint key");
}

int Proof(const ServerTarget& server, std::span<const std::string> args) {
  if (args.empty()) return PrintUsageError("missing proof type (consistency)", kProofHelp);
  if (args[0] == "-help" || args[0] == "--help" || args[0] == "-h") {
    std::cout << kProofHelp;
    return kExitOk;
  }
  if (args[0] != "consistency") {
    return PrintUsageError("unknown proof type \"" + args[0] + "\" (expected consistency)",
                           kProofHelp);
  }
  Result<ParsedFlags> flags = detail::ParseFlags(args.subspan(1), {"first", "second", "o"});
  if (!flags) return PrintUsageError(flags.error().message(), kProofHelp);
  if (flags->help) {
    std::cout << kProofHelp;
    return kExitOk;
  }
  if (!flags->has("first") || !flags->has("second")) {
    return PrintUsageError("-first and -second are required", kProofHelp);
  }
  Result<std::uint64_t> first = detail::ParseCount("first", *flags->last("first"));
  if (!first) return PrintUsageError(first.error().message(), kProofHelp);
  Result<std::uint64_t> second = detail::ParseCount("second", *flags->last("second"));
  if (!second) return PrintUsageError(second.error().message(), kProofHelp);

  ApiClient api(server);
  Result<nlohmann::json> data =
      api.GetData("sys/audit/proof/consistency",
                  {{"first", std::to_string(*first)}, {"second", std::to_string(*second)}});
  if (!data) return PrintFailure(data.error());
  const std::string description = "the consistency proof from size " + std::to_string(*first) +
                                  " to " + std::to_string(*second);
  return Output(*flags, nlohmann::json{{"data", *data}}.dump(2) + "\n", description);
}

void PrintTable(const std::vector<nlohmann::json>& records) {
  std::cout << std::left << std::setw(10) << "SEQ" << std::setw(32) << "TIME" << std::setw(7)
            << "STATUS" << std::setw(8) << "METHOD" << std::setw(28) << "ACCESSOR"
            << "PATH\n";
  for (const nlohmann::json& record : records) {
    std::cout << std::left << std::setw(10) << record.value("seq", std::uint64_t{0})
              << std::setw(32) << record.value("time", "") << std::setw(7)
              << record.value("status", 0) << std::setw(8) << record.value("method", "")
              << std::setw(28) << record.value("accessor", "") << record.value("path", "") << "\n";
  }
}

int Query(const ServerTarget& server, std::span<const std::string> args) {
  Result<ParsedFlags> flags = detail::ParseFlags(
      args, {"from", "to", "accessor", "spiffe-id", "path-prefix", "status", "limit", "format"});
  if (!flags) return PrintUsageError(flags.error().message(), kQueryHelp);
  if (flags->help) {
    std::cout << kQueryHelp;
    return kExitOk;
  }
  const std::string format = flags->last("format").value_or("table");
  if (format != "table" && format != "json") {
    return PrintUsageError("-format must be table or json", kQueryHelp);
  }
  std::uint64_t limit = kDefaultQueryLimit;
  if (flags->has("limit")) {
    Result<std::uint64_t> parsed = detail::ParseCount("limit", *flags->last("limit"));
    if (!parsed || *parsed == 0) return PrintUsageError("-limit must be at least 1", kQueryHelp);
    limit = *parsed;
  }

  httplib::Params filters;
  for (const auto& [flag, parameter] :
       std::initializer_list<std::pair<std::string, std::string>>{{"from", "from"},
                                                                  {"to", "to"},
                                                                  {"accessor", "accessor"},
                                                                  {"spiffe-id", "spiffe_id"},
                                                                  {"path-prefix", "path_prefix"},
                                                                  {"status", "status"}}) {
    if (const std::optional<std::string> value = flags->last(flag)) {
      filters.emplace(parameter, *value);
    }
  }

  // The server examines a bounded number of records per call and returns `next` to continue,
  // so a call may return fewer records than asked, or none.
  ApiClient api(server);
  std::vector<nlohmann::json> records;
  std::optional<std::uint64_t> after;
  while (records.size() < limit) {
    httplib::Params params = filters;
    params.emplace("limit", std::to_string(std::min(limit - records.size(), kQueryPageLimit)));
    if (after) params.emplace("after", std::to_string(*after));
    Result<nlohmann::json> data = api.GetData("sys/audit/records", params);
    if (!data) return PrintFailure(data.error());
    if (!data->contains("records") || !(*data)["records"].is_array()) {
      return PrintFailure(Error(Code::kDataLoss, "GET sys/audit/records: no records list"));
    }
    for (nlohmann::json& record : (*data)["records"]) {
      if (records.size() < limit) records.push_back(std::move(record));
    }
    const auto next = data->find("next");
    if (next == data->end() || !next->is_number_unsigned()) break;
    after = next->get<std::uint64_t>();
  }

  if (format == "json") {
    std::cout << nlohmann::json(records).dump(2) << "\n";
  } else {
    PrintTable(records);
  }
  return kExitOk;
}

}  // namespace

int RunAudit(const ServerTarget& server, const std::vector<std::string>& args) {
  if (args.empty()) return PrintUsageError("missing subcommand", kAuditHelp);
  const std::string& command = args[0];
  const std::span<const std::string> rest(args.begin() + 1, args.end());
  if (command == "-help" || command == "--help" || command == "-h" || command == "help") {
    std::cout << kAuditHelp;
    return kExitOk;
  }
  if (command == "verify") return Verify(server, rest);
  if (command == "export") return Export(server, rest);
  if (command == "checkpoint") return Checkpoint(server, rest);
  if (command == "public-key") return PublicKey(server, rest);
  if (command == "proof") return Proof(server, rest);
  if (command == "query") return Query(server, rest);
  return PrintUsageError("unknown subcommand \"" + command + "\"", kAuditHelp);
}

}  // namespace kw::cli
