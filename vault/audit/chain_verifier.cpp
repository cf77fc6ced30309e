#include "vault/audit/chain_verifier.hpp"

#include <limits>
#include <optional>
#include <string>

#include "vault/audit/audit_record.hpp"
#include "vault/audit/head_mac.hpp"

namespace kw::vault::audit::detail {

namespace {

VerifyReport Broken(VerifyReport report, std::uint64_t sequence, std::string reason) {
  report.ok = false;
  report.first_broken_sequence = sequence;
  report.reason = std::move(reason);
  return report;
}

std::string Record(std::uint64_t sequence) { return "record " + std::to_string(sequence); }

// Checks the record stored for `sequence` against the hash of its predecessor. Returns the
// reason it is broken, or nullopt when it is sound.
std::optional<std::string> CheckRecord(std::uint64_t sequence, ByteSpan stored,
                                       std::string_view previous_hash) {
  const nlohmann::json record =
      nlohmann::json::parse(AsText(stored), nullptr, /*allow_exceptions=*/false);
  if (record.is_discarded() || !record.is_object()) {
    return Record(sequence) + " does not parse as a JSON object";
  }

  const auto stored_sequence = record.find("seq");
  if (stored_sequence == record.end() || !stored_sequence->is_number_unsigned()) {
    return Record(sequence) + ": field seq is missing or not an unsigned integer";
  }
  if (stored_sequence->get<std::uint64_t>() != sequence) {
    return Record(sequence) + ": sequence out of order (the record stored there names " +
           std::to_string(stored_sequence->get<std::uint64_t>()) + ")";
  }

  const auto prev_hash = record.find("prev_hash");
  if (prev_hash == record.end() || !prev_hash->is_string()) {
    return Record(sequence) + ": field prev_hash is missing or not a string";
  }
  if (prev_hash->get_ref<const std::string&>() != previous_hash) {
    if (sequence == 1) return Record(1) + ": previous hash mismatch (must be 64 zeros)";
    return Record(sequence) + ": previous hash mismatch (" + Record(sequence - 1) + " changed?)";
  }

  if (CanonicalJson(record) != AsText(stored)) {
    return Record(sequence) + " is not in canonical JSON form (edited by hand?)";
  }
  return std::nullopt;
}

struct HeadState {
  std::optional<StoredHead> stored;  // nullopt when absent or unparsable
  bool present = false;
  bool trusted = false;  // parsed and its MAC verified
  std::string problem;   // why it is not trusted
};

Result<HeadState> ReadHead(storage::Storage& storage, hsm::Token& token, hsm::KeyHandle key) {
  HeadState state;
  KW_ASSIGN_OR_RETURN(const std::optional<Bytes> bytes, storage.Get(kHeadKey));
  if (!bytes) return state;
  state.present = true;

  Result<StoredHead> decoded = DecodeHead(*bytes);
  if (!decoded) {
    state.problem = "head MAC invalid (" + decoded.error().message() + ")";
    return state;
  }
  state.stored = std::move(*decoded);
  KW_ASSIGN_OR_RETURN(state.trusted, IsHeadMacValid(token, key, *state.stored));
  if (!state.trusted) state.problem = "head MAC invalid";
  return state;
}

}  // namespace

Result<VerifyReport> VerifyChain(storage::Storage& storage, hsm::Token& token,
                                 hsm::KeyHandle hmac_key) {
  VerifyReport report;

  // The head is read first. Records appended while the scan runs lie beyond it and are
  // checked by the next verification.
  KW_ASSIGN_OR_RETURN(const HeadState head, ReadHead(storage, token, hmac_key));
  if (head.stored) report.head_sequence = head.stored->head.sequence;
  const std::uint64_t bound =
      head.trusted ? head.stored->head.sequence : std::numeric_limits<std::uint64_t>::max();

  std::uint64_t last = 0;
  std::string last_hash(kGenesisHash);
  std::string start_after;
  bool done = false;
  while (!done) {
    KW_ASSIGN_OR_RETURN(const std::vector<storage::Entry> page,
                        storage.Scan(kLogPrefix, start_after, kVerifyPageSize));
    for (const storage::Entry& entry : page) {
      const std::uint64_t expected = last + 1;
      const std::optional<std::uint64_t> sequence = ParseRecordKey(entry.key);
      if (!sequence) {
        return Broken(report, expected, "record key \"" + entry.key + "\" is malformed");
      }
      if (*sequence > bound) {
        done = true;
        break;
      }
      if (*sequence != expected) return Broken(report, expected, Record(expected) + " missing");
      if (auto reason = CheckRecord(expected, entry.value, last_hash)) {
        return Broken(report, expected, std::move(*reason));
      }
      last = expected;
      last_hash = RecordHash(AsText(entry.value));
      ++report.records_checked;
    }
    if (page.size() < kVerifyPageSize) done = true;
    if (!page.empty()) start_after = page.back().key;
  }

  if (!head.present) {
    if (last == 0) {
      report.ok = true;
      return report;
    }
    return Broken(report, last + 1,
                  "head missing although the log holds " + std::to_string(last) + " records");
  }
  if (!head.trusted) return Broken(report, last + 1, head.problem);

  const Head& trusted = head.stored->head;
  if (trusted.sequence > last) {
    return Broken(
        report, last + 1,
        "log truncated after " + Record(last) + " (head names " + Record(trusted.sequence) + ")");
  }
  if (trusted.hash != last_hash) {
    return Broken(report, last,
                  Record(last) + " does not match the head hash (" + Record(last) + " changed?)");
  }

  // A record past the head is only sound if a head committed since then covers it, because a
  // record and the head naming it commit in one transaction.
  KW_ASSIGN_OR_RETURN(const std::optional<storage::Entry> tail, storage.Last(kLogPrefix));
  if (tail) {
    const std::optional<std::uint64_t> tail_sequence = ParseRecordKey(tail->key);
    if (!tail_sequence) {
      return Broken(report, last + 1, "record key \"" + tail->key + "\" is malformed");
    }
    if (*tail_sequence > last) {
      KW_ASSIGN_OR_RETURN(const HeadState newer, ReadHead(storage, token, hmac_key));
      if (!newer.trusted || newer.stored->head.sequence < *tail_sequence) {
        return Broken(
            report, last + 1,
            Record(*tail_sequence) + " lies beyond the head (head names " + Record(last) + ")");
      }
    }
  }

  report.ok = true;
  return report;
}

}  // namespace kw::vault::audit::detail
