// `keyward audit verify` over files: the records and checkpoints of exports, archives or a file
// sink, checked against a saved checkpoint and the log's public key, with neither server nor
// HSM.
#include <fstream>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "base/bytes.hpp"
#include "cli/audit_support.hpp"
#include "vault/audit/log_verifier.hpp"
#include "vault/audit/merkle.hpp"
#include "vault/audit/signed_note.hpp"

namespace kw::cli::detail {

namespace {

namespace audit = vault::audit;
namespace merkle = vault::audit::merkle;
namespace note = vault::audit::note;

std::string Trim(std::string_view text) {
  const std::size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const std::size_t last = text.find_last_not_of(" \t\r\n");
  return std::string(text.substr(first, last - first + 1));
}

// Parses the -key values: a vkey, or @FILE naming a file that contains one.
Result<std::vector<note::VerifierKey>> LoadKeys(const std::vector<std::string>& values) {
  std::vector<note::VerifierKey> keys;
  for (const std::string& value : values) {
    std::string vkey = value;
    if (value.starts_with("@")) {
      KW_ASSIGN_OR_RETURN(const std::string content, ReadWholeFile(value.substr(1)));
      vkey = Trim(content);
    }
    Result<note::VerifierKey> key = note::ParseVkey(Trim(vkey));
    if (!key) return tl::unexpected(key.error().WithContext("-key " + value));
    keys.push_back(std::move(*key));
  }
  return keys;
}

// Returns the signed note in a checkpoint file. The file contains the note itself (what
// `keyward audit checkpoint -o` writes), or the JSON reply of GET sys/audit/checkpoint.
Result<std::string> LoadCheckpointNote(const std::string& path) {
  KW_ASSIGN_OR_RETURN(std::string content, ReadWholeFile(path));
  const std::size_t first = content.find_first_not_of(" \t\r\n");
  if (first == std::string::npos || content[first] != '{') return content;

  const nlohmann::json body = nlohmann::json::parse(content, nullptr, /*allow_exceptions=*/false);
  if (body.is_object()) {
    const nlohmann::json& holder = body.contains("data") ? body["data"] : body;
    if (holder.is_object() && holder.contains("checkpoint") && holder["checkpoint"].is_string()) {
      return holder["checkpoint"].get<std::string>();
    }
  }
  return InvalidArgument(path + ": a JSON checkpoint file needs the string field data.checkpoint");
}

// Reads a consistency proof file: the JSON reply of GET sys/audit/proof/consistency. Its sizes,
// when present, must be the checkpoints' sizes.
Result<std::vector<merkle::Hash>> LoadProof(const std::string& path, std::uint64_t first,
                                            std::uint64_t second) {
  KW_ASSIGN_OR_RETURN(const std::string content, ReadWholeFile(path));
  const nlohmann::json body = nlohmann::json::parse(content, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object()) return InvalidArgument(path + ": not a JSON object");
  const nlohmann::json& data = body.contains("data") ? body["data"] : body;
  if (!data.is_object() || !data.contains("proof") || !data["proof"].is_array()) {
    return InvalidArgument(path + ": field data.proof (a list of base64 hashes) is missing");
  }

  // The sizes are optional, but when present they must be unsigned integers.
  const auto size_field = [&](const char* name, std::uint64_t fallback) -> Result<std::uint64_t> {
    if (!data.contains(name)) return fallback;
    if (!data[name].is_number_unsigned()) {
      return InvalidArgument(path + ": field data." + name + " must be a non-negative integer");
    }
    return data[name].get<std::uint64_t>();
  };
  KW_ASSIGN_OR_RETURN(const std::uint64_t proof_first, size_field("first", first));
  KW_ASSIGN_OR_RETURN(const std::uint64_t proof_second, size_field("second", second));
  if (proof_first != first || proof_second != second) {
    return InvalidArgument(path + ": the proof is for sizes " + std::to_string(proof_first) +
                           " to " + std::to_string(proof_second) + ", but the checkpoints have " +
                           "sizes " + std::to_string(first) + " and " + std::to_string(second));
  }

  std::vector<merkle::Hash> proof;
  for (const nlohmann::json& element : data["proof"]) {
    const std::optional<Bytes> bytes =
        element.is_string() ? FromBase64(element.get<std::string>()) : std::nullopt;
    if (!bytes || bytes->size() != merkle::Hash().size()) {
      return InvalidArgument(path + ": proof element " + std::to_string(proof.size()) +
                             " is not a base64 SHA-256 hash");
    }
    merkle::Hash hash;
    std::copy(bytes->begin(), bytes->end(), hash.begin());
    proof.push_back(hash);
  }
  return proof;
}

// A checkpoint file after its signature was checked.
struct CheckpointFile {
  std::string path;
  std::string note;
  audit::OpenedCheckpoint opened;
};

Result<CheckpointFile> OpenCheckpointFile(const std::string& path,
                                          std::span<const note::VerifierKey> keys) {
  KW_ASSIGN_OR_RETURN(std::string note, LoadCheckpointNote(path));
  Result<audit::OpenedCheckpoint> opened = audit::OpenCheckpoint(note, keys);
  if (!opened) return tl::unexpected(opened.error().WithContext(path));
  return CheckpointFile{path, std::move(note), std::move(*opened)};
}

// Feeds the lines of `path` to `verifier`. Returns an error when the file cannot be read, and
// a problem of its own for a last line without its newline.
Result<std::optional<std::string>> FeedFile(const std::string& path, audit::LogVerifier& verifier) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("cannot read " + path + ": no such file or no permission");

  std::string line;
  std::uint64_t number = 0;
  while (verifier.ok() && std::getline(in, line)) {
    ++number;
    const std::string location = path + " line " + std::to_string(number);
    verifier.AddLine(line, location);
    // getline reaches the end of the file only on a line that lacks its newline.
    if (in.eof() && verifier.ok()) {
      return std::optional<std::string>(location +
                                        ": the line has no newline at its end (an incomplete "
                                        "write, or the file was cut)");
    }
  }
  if (in.bad()) return Unavailable("cannot read " + path + ": read error");
  return std::optional<std::string>();
}

void PrintSummary(std::ostream& out, const audit::LogVerifier& verifier,
                  const CheckpointFile& checkpoint,
                  const std::optional<CheckpointFile>& old_checkpoint, bool proof_verified) {
  out << "Verified                true\n"
      << "Records checked         " << verifier.records_checked() << "\n"
      << "Tree size               " << verifier.tree_size() << "\n"
      << "Root                    " << ToBase64(verifier.root()) << "\n"
      << "Checkpoints verified    " << verifier.checkpoints_verified() << "\n"
      << "Checkpoint              size " << checkpoint.opened.checkpoint.size << ", origin "
      << checkpoint.opened.checkpoint.origin << "\n";
  if (old_checkpoint) {
    out << "Old checkpoint          size " << old_checkpoint->opened.checkpoint.size
        << (proof_verified ? ", consistency proof verified" : "") << "\n";
  }
  out << "Covered by checkpoints  records 1 to " << verifier.covered_size() << "\n";
  if (verifier.tree_size() > verifier.covered_size()) {
    out << "Not covered             records " << verifier.covered_size() + 1 << " to "
        << verifier.tree_size()
        << " (checked by their hash chain only; verify again with a newer checkpoint)\n";
  }
}

// The summary as a response's data, for -format=json|yaml and -field.
nlohmann::json SummaryData(const audit::LogVerifier& verifier, const CheckpointFile& checkpoint,
                           const std::optional<CheckpointFile>& old_checkpoint,
                           bool proof_verified) {
  nlohmann::json data = {{"verified", true},
                         {"records_checked", verifier.records_checked()},
                         {"tree_size", verifier.tree_size()},
                         {"root", ToBase64(verifier.root())},
                         {"checkpoints_verified", verifier.checkpoints_verified()},
                         {"checkpoint_size", checkpoint.opened.checkpoint.size},
                         {"checkpoint_origin", checkpoint.opened.checkpoint.origin},
                         {"covered_size", verifier.covered_size()}};
  if (old_checkpoint) {
    data["old_checkpoint_size"] = old_checkpoint->opened.checkpoint.size;
    data["consistency_proof_verified"] = proof_verified;
  }
  return data;
}

}  // namespace

int RunOfflineVerify(Context& context, const Args& flags, const Command& command) {
  std::ostream& err = context.err;
  if (!flags.has("key")) return ReportUsage("-key is required with -log", command, err);
  if (!flags.has("checkpoint"))
    return ReportUsage("-checkpoint is required with -log", command, err);
  if (flags.has("proof") && !flags.has("old-checkpoint")) {
    return ReportUsage("-proof needs -old-checkpoint", command, err);
  }

  Result<std::vector<note::VerifierKey>> keys = LoadKeys(flags.all("key"));
  if (!keys) return ReportFailure(keys.error(), err);
  Result<CheckpointFile> checkpoint = OpenCheckpointFile(*flags.last("checkpoint"), *keys);
  if (!checkpoint) return ReportFailure(checkpoint.error(), err);

  std::optional<CheckpointFile> old_checkpoint;
  bool proof_verified = false;
  if (flags.has("old-checkpoint")) {
    Result<CheckpointFile> opened = OpenCheckpointFile(*flags.last("old-checkpoint"), *keys);
    if (!opened) return ReportFailure(opened.error(), err);
    old_checkpoint = std::move(*opened);
    const note::Checkpoint& older = old_checkpoint->opened.checkpoint;
    const note::Checkpoint& newer = checkpoint->opened.checkpoint;
    if (older.size > newer.size) {
      return ReportFailure(
          Error(Code::kInvalidArgument, "-old-checkpoint has size " + std::to_string(older.size) +
                                            ", more than the size " + std::to_string(newer.size) +
                                            " of -checkpoint: swap the two files"),
          err);
    }
    if (flags.has("proof")) {
      Result<std::vector<merkle::Hash>> proof =
          LoadProof(*flags.last("proof"), older.size, newer.size);
      if (!proof) return ReportFailure(proof.error(), err);
      Status consistent =
          merkle::VerifyConsistency(older.size, newer.size, older.root, newer.root, *proof);
      if (!consistent) {
        return ReportFailure(consistent.error().WithContext(
                                 "the consistency proof from size " + std::to_string(older.size) +
                                 " to " + std::to_string(newer.size) +
                                 " does not verify: the log was rewritten between "
                                 "the two checkpoints, or the proof file is damaged"),
                             err);
      }
      proof_verified = true;
    }
  }

  Result<audit::LogVerifier> created = audit::LogVerifier::Create(*keys);
  if (!created) return ReportFailure(created.error(), err);
  audit::LogVerifier& verifier = *created;
  verifier.AddCheckpoint(checkpoint->note, checkpoint->path);
  if (old_checkpoint) verifier.AddCheckpoint(old_checkpoint->note, old_checkpoint->path);

  for (const std::string& path : flags.all("log")) {
    Result<std::optional<std::string>> fed = FeedFile(path, verifier);
    if (!fed) return ReportFailure(fed.error(), err);
    if (*fed) {
      err << "error: " << **fed << "\n";
      return kExitError;
    }
    if (!verifier.ok()) break;
  }
  verifier.Finish();

  if (const auto& problem = verifier.problem()) {
    err << "error: ";
    if (!problem->location.empty()) err << problem->location << ": ";
    err << problem->reason << "\n";
    return kExitError;
  }
  if (context.globals.format == OutputFormat::kTable && context.globals.field.empty()) {
    PrintSummary(context.out, verifier, *checkpoint, old_checkpoint, proof_verified);
    return kExitOk;
  }
  const nlohmann::json summary = {
      {"data", SummaryData(verifier, *checkpoint, old_checkpoint, proof_verified)}};
  return PrintResponse(context.globals, summary, context.out, context.err);
}

}  // namespace kw::cli::detail
