#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/bytes.hpp"
#include "base/clock.hpp"
#include "base/result.hpp"
#include "hsm/token.hpp"
#include "storage/storage.hpp"

namespace kw::vault::audit {

// Records pruned from storage per commit: each commit deletes at most this many records and
// moves the prune marker past them.
inline constexpr std::size_t kPruneBatchSize = 1000;

// Outcome of PruneAuditRecords.
struct PruneReport {
  std::uint64_t pruned = 0;       // records deleted from storage
  std::uint64_t first_seq = 0;    // first pruned record; 0 when none was pruned
  std::uint64_t last_seq = 0;     // last pruned record; 0 when none was pruned
  std::uint64_t checkpoints = 0;  // checkpoint lines written into the archive
  std::string archive;            // the archive file's path; empty when none was pruned
  bool archive_reused = false;    // an identical archive from an interrupted run was kept
};

// Archives and deletes the audit records whose time is before clock.Now() - older_than.
//
// Records are taken in sequence order from the first one still stored, and selection stops at
// the first record that is not old enough, so the stored log stays one contiguous range. The
// newest record is never pruned, because the head and the next append chain onto it. Before
// anything is deleted, the selected records (their stored bytes, one per line) and the stored
// checkpoints for tree sizes in that range (as {"checkpoint": <note>} lines after the record
// whose seq equals the size) are written to
//   <archive_dir>/keyward-audit-<first seq, 20 digits>-<last seq, 20 digits>.jsonl
// through a .tmp file, fsync, rename and a directory fsync, with mode 0600. Deletion then runs
// in commits of at most kPruneBatchSize records; each commit also moves the prune marker
// (detail::kPrunedKey) to its last record. Tree nodes and checkpoints stay in storage.
//
// A run that crashed before its deletes committed leaves an archive behind. The next run
// compares it byte for byte with what it would write and keeps it when equal. So a crash
// leaves at most a duplicate archive and never loses a record. `archive_dir` is created with
// mode 0700 when missing.
//
// Errors: invalid_argument for older_than <= 0 or a relative or empty archive_dir;
// failed_precondition when archive_dir is not a directory, is world-writable, or already holds
// an archive of the same range with other content; data_loss when the prune marker fails its
// MAC or the records to prune do not chain onto it (no archive is kept, nothing is deleted);
// aborted when another prune moved the marker meanwhile. After an error in the deletion
// phase, the commits that succeeded stay and the archive covers them.
Result<PruneReport> PruneAuditRecords(storage::Storage& storage, hsm::Token& token,
                                      hsm::KeyHandle hmac_key, const Clock& clock,
                                      std::chrono::seconds older_than,
                                      const std::string& archive_dir);

// Parses an RFC 3339 timestamp: "2026-05-28T20:26:41Z", with optional fractional seconds (up
// to nanoseconds) and a "Z" or "+hh:mm"/"-hh:mm" offset. "t" and "z" are accepted as RFC 3339
// allows. Returns nullopt when malformed or out of range (years 0000 to 9999, leap second 60
// rejected).
std::optional<TimePoint> ParseRfc3339(std::string_view text);

}  // namespace kw::vault::audit

// The prune marker: which records retention removed, so that a verifier can start after them.
namespace kw::vault::audit::detail {

// Stores canonical JSON {"hash":<hex>,"mac":<hex>,"seq":<n>}: the sequence number and record
// hash of the last pruned record, and an HMAC-SHA256 made in the HSM under the audit HMAC key.
inline constexpr std::string_view kPrunedKey = "sys/audit/pruned";

// The last pruned record, as the prune marker names it.
struct PruneMarker {
  std::uint64_t sequence = 0;
  std::string hash;  // RecordHash of that record's stored bytes: lower-case hex SHA-256
};

// A prune marker after parsing, its MAC not yet checked.
struct StoredPruneMarker {
  PruneMarker marker;
  Bytes mac;
};

// Returns the bytes that the prune marker MAC covers:
//   0xFF "keyward-audit-pruned:" <sequence in decimal> ":" <hash hex>
// The leading 0xFF keeps value HMACs from being replayed as marker MACs (see HeadMacMessage),
// and the different label keeps a head MAC from being replayed as a marker MAC.
Bytes PruneMarkerMacMessage(const PruneMarker& marker);

// Computes the marker MAC in the HSM.
Result<Bytes> ComputePruneMarkerMac(hsm::Token& token, hsm::KeyHandle key,
                                    const PruneMarker& marker);

// Recomputes the MAC of `stored.marker` and compares it with `stored.mac` in constant time.
// Returns false on a mismatch; the HSM's error when the HMAC cannot be computed.
Result<bool> IsPruneMarkerMacValid(hsm::Token& token, hsm::KeyHandle key,
                                   const StoredPruneMarker& stored);

// Returns the canonical JSON stored at kPrunedKey.
std::string EncodePruneMarker(const PruneMarker& marker, ByteSpan mac);

// Parses a stored prune marker. data_loss naming the field when it is not the form
// EncodePruneMarker writes.
Result<StoredPruneMarker> DecodePruneMarker(ByteSpan stored);

// Parses `stored` (the bytes at kPrunedKey) and checks its MAC. data_loss when the marker is
// malformed or its MAC does not verify.
Result<PruneMarker> AuthenticatePruneMarker(hsm::Token& token, hsm::KeyHandle key,
                                            ByteSpan stored);

// Reads, parses and authenticates the prune marker. nullopt when no record was ever pruned;
// data_loss when the marker is malformed or its MAC does not verify.
Result<std::optional<PruneMarker>> LoadPruneMarker(storage::Storage& storage, hsm::Token& token,
                                                   hsm::KeyHandle key);

}  // namespace kw::vault::audit::detail
