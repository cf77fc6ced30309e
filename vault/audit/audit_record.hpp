#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/bytes.hpp"
#include "base/result.hpp"

// The stored form of the audit chain: record keys, canonical JSON, the authenticated head.
// Shared by the appender and the verifier; nothing here touches the HSM or storage.
namespace kw::vault::audit::detail {

// Records live at kLogPrefix + the sequence number zero-padded to kSequenceDigits digits, so
// that key order is sequence order.
inline constexpr std::string_view kLogPrefix = "sys/audit/log/";
inline constexpr std::size_t kSequenceDigits = 20;
inline constexpr std::string_view kHeadKey = "sys/audit/head";

// Signed checkpoints live at kCheckpointPrefix + the tree size zero-padded to kSequenceDigits
// digits; the value is the signed note text.
inline constexpr std::string_view kCheckpointPrefix = "sys/audit/checkpoint/";

// Returns the storage key of the checkpoint for a tree of `size` records.
std::string CheckpointKey(std::uint64_t size);

// Parses the tree size out of a checkpoint key; nullopt when malformed.
std::optional<std::uint64_t> ParseCheckpointKey(std::string_view key);

// The prev_hash of record 1: there is no previous record.
inline constexpr std::string_view kGenesisHash =
    "0000000000000000000000000000000000000000000000000000000000000000";

// Returns the storage key of record `sequence`.
std::string RecordKey(std::uint64_t sequence);

// Parses the sequence number out of a record key; nullopt unless the key is kLogPrefix
// followed by exactly kSequenceDigits decimal digits.
std::optional<std::uint64_t> ParseRecordKey(std::string_view key);

// Serializes `value` in keyward's canonical JSON form: object keys in byte order (nlohmann's
// std::map ordering), no whitespace, UTF-8 without \u escapes for non-ASCII characters, and
// invalid UTF-8 replaced by U+FFFD, so invalid UTF-8 does not make it throw.
std::string CanonicalJson(const nlohmann::json& value);

// Maximum nesting of arrays and objects in a stored record: the bodies' limit (128 levels,
// redaction.hpp) plus the record's own levels, with room to spare.
inline constexpr std::size_t kMaxRecordDepth = 136;

// Returns true when the JSON text `text` nests arrays and objects deeper than `max_depth`,
// counting brackets outside strings without parsing. Callers check it before parsing or
// serializing a record from storage or a file: nlohmann::json serializes recursively, so a
// deeper record could exhaust the stack.
bool NestsDeeperThan(std::string_view text, std::size_t max_depth);

// Returns the lower-case hex SHA-256 of `canonical`, the hash that the next record's prev_hash
// and the head name.
std::string RecordHash(std::string_view canonical);

// The last record's sequence number and hash, as stored at kHeadKey with a MAC.
struct Head {
  std::uint64_t sequence = 0;
  std::string hash{kGenesisHash};
};

// The stored head after parsing, its MAC not yet checked.
struct StoredHead {
  Head head;
  Bytes mac;
};

// Returns the bytes that the head MAC covers:
//   0xFF "keyward-audit-head:" <sequence in decimal> ":" <hash hex>
// The leading 0xFF byte never starts a valid UTF-8 string, and value HMACs are only computed
// for strings that do not start with it (see IsHmacableValue), so no value HMAC written to a
// record or returned by sys/audit-hash can be replayed as a head MAC.
Bytes HeadMacMessage(const Head& head);

// Returns true when `value` may be HMACed as a value: it does not start with byte 0xFF.
bool IsHmacableValue(std::string_view value);

// Returns the canonical JSON stored at kHeadKey: {"hash":...,"mac":...,"seq":...}.
std::string EncodeHead(const Head& head, ByteSpan mac);

// Parses {"hash":...,"mac":...,"seq":...}, the stored form of the head and of the prune
// marker. data_loss naming `what` and the field when it is not that form.
Result<StoredHead> DecodeSequenceHashMac(ByteSpan stored, std::string_view what);

// Parses a stored head. data_loss when it is not the form EncodeHead writes.
Result<StoredHead> DecodeHead(ByteSpan stored);

}  // namespace kw::vault::audit::detail
