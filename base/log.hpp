#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

// Structured logs: one JSON object per line on stderr. Fixed message, variables as fields:
//   log::Info("data key rotated", {{log::kKeyVersion, 8}});
// Never pass a secret, token, PIN, password, request body or Authorization header.
namespace kw::log {

enum class Level { kDebug, kInfo, kWarn, kError };

// Field names, so the same fact has the same key in every line.
inline constexpr const char* kRequestId = "request_id";
inline constexpr const char* kAccessor = "accessor";
inline constexpr const char* kMount = "mount";
inline constexpr const char* kPath = "path";
inline constexpr const char* kLeaseId = "lease_id";
inline constexpr const char* kError = "error";
inline constexpr const char* kKeyVersion = "key_version";
inline constexpr const char* kAddress = "address";

// Sets the lowest level written; debug is off by default.
void SetLevel(Level level);

void Write(Level level, std::string_view message, nlohmann::json fields);

inline void Debug(std::string_view message, nlohmann::json fields = nlohmann::json::object()) {
  Write(Level::kDebug, message, std::move(fields));
}
inline void Info(std::string_view message, nlohmann::json fields = nlohmann::json::object()) {
  Write(Level::kInfo, message, std::move(fields));
}
inline void Warn(std::string_view message, nlohmann::json fields = nlohmann::json::object()) {
  Write(Level::kWarn, message, std::move(fields));
}
inline void Error(std::string_view message, nlohmann::json fields = nlohmann::json::object()) {
  Write(Level::kError, message, std::move(fields));
}

}  // namespace kw::log
