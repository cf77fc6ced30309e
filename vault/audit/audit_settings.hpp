#pragma once

#include <chrono>
#include <string>
#include <vector>

// What the server configuration sets for the audit log: sinks besides the database,
// checkpoints and retention. docs/OPERATIONS.md documents the config keys.
namespace kw::vault::audit {

// One audit sink besides the database.
struct SinkConfig {
  std::string name;         // unique; names the sink in errors, health and sys/audit-hash/<name>
  std::string type;         // "file" (JSON lines) or "syslog"
  std::string path;         // file: the log file; syslog: the local socket (default /dev/log)
  bool required = true;     // false: best-effort, a failure is logged and reported only
  std::string facility = "auth";  // syslog only
  std::string tag = "keyward";    // syslog only: the APP-NAME
};

struct AuditSettings {
  std::vector<SinkConfig> sinks;
  // A checkpoint is signed this often while new records arrive, and at seal and shutdown.
  std::chrono::seconds checkpoint_interval{10};
  // The checkpoint origin and signing key name. Empty: "keyward.audit/<random hex>", chosen
  // when the signing key is created and kept in storage.
  std::string origin;
  std::string checkpoint_key_type = "ed25519";  // or "ecdsa-p256"
  // Records older than this are archived and pruned; zero keeps every record.
  std::chrono::seconds retention{0};
  std::string archive_dir;  // where pruned records go; required when retention is set
};

}  // namespace kw::vault::audit
