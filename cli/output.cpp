// Output formats (table, JSON, YAML), -field, and the error and usage reports of the CLI.
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <regex>

#include <yaml-cpp/yaml.h>

#include "cli/cli.hpp"

namespace kw::cli {

using nlohmann::json;

const json& Member(const json& object, std::string_view key) {
  static const json kNull;
  if (!object.is_object()) return kNull;
  auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}

std::string CellText(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_null()) return "n/a";
  return value.dump();
}

namespace {

// Keys of Vault's response envelope. A reply with none of them (sys/health, sys/seal-status,
// sys/init) is printed whole.
bool IsEnvelope(const json& response) {
  if (!response.is_object()) return false;
  for (const char* key : {"request_id", "lease_id", "data", "auth", "wrap_info", "warnings"}) {
    if (response.contains(key)) return true;
  }
  return false;
}

// Formats seconds like Vault's CLI: 2764800 -> "768h", 5400 -> "1h30m", 90 -> "1m30s".
std::string FormatDuration(std::int64_t seconds) {
  if (seconds <= 0) return "0s";
  const std::int64_t hours = seconds / 3600;
  const std::int64_t minutes = seconds % 3600 / 60;
  const std::int64_t rest = seconds % 60;
  std::string text;
  if (hours > 0) text += std::to_string(hours) + "h";
  if (minutes > 0 || (hours > 0 && rest > 0)) text += std::to_string(minutes) + "m";
  if (rest > 0) text += std::to_string(rest) + "s";
  return text;
}

std::string DurationCell(const json& value, bool zero_is_infinite) {
  if (!value.is_number()) return CellText(value);
  const auto seconds = value.get<std::int64_t>();
  if (seconds == 0 && zero_is_infinite) return "∞";
  return FormatDuration(seconds);
}

// The rows Vault's CLI prints for an auth block, by row name, with the value of each row.
std::vector<std::pair<std::string, std::string>> AuthRows(const json& auth) {
  std::vector<std::pair<std::string, std::string>> rows;
  const auto add = [&](const char* row, const char* key) {
    if (auth.contains(key) && !auth[key].is_null()) rows.emplace_back(row, CellText(auth[key]));
  };
  add("token", "client_token");
  add("token_accessor", "accessor");
  if (auth.contains("lease_duration")) {
    rows.emplace_back("token_duration", DurationCell(auth["lease_duration"], true));
  }
  add("token_renewable", "renewable");
  add("token_policies", "token_policies");
  add("identity_policies", "identity_policies");
  add("policies", "policies");
  if (const json& metadata = Member(auth, "metadata"); metadata.is_object()) {
    for (const auto& [key, value] : metadata.items()) {
      rows.emplace_back("token_meta_" + key, CellText(value));
    }
  }
  return rows;
}

// The auth field behind a row name of AuthRows, for -field.
const char* AuthKeyForRow(std::string_view row) {
  if (row == "token") return "client_token";
  if (row == "token_accessor") return "accessor";
  if (row == "token_duration") return "lease_duration";
  if (row == "token_renewable") return "renewable";
  return nullptr;
}

// Finds -field's value: in data, then auth (under its own name or the table's row name), then
// the top level.
const json* FindField(const json& response, const std::string& name) {
  if (!IsEnvelope(response)) {
    return response.is_object() && response.contains(name) ? &response[name] : nullptr;
  }
  if (const json& data = Member(response, "data"); data.is_object() && data.contains(name)) {
    return &data[name];
  }
  if (const json& auth = Member(response, "auth"); auth.is_object()) {
    if (auth.contains(name)) return &auth[name];
    if (const char* key = AuthKeyForRow(name); key != nullptr && auth.contains(key)) {
      return &auth[key];
    }
  }
  if (response.contains(name)) return &response[name];
  return nullptr;
}

int PrintField(const Globals& globals, const json& response, std::ostream& out,
               std::ostream& err) {
  const json* value = FindField(response, globals.field);
  if (value == nullptr) {
    err << "error: field \"" << globals.field << "\" is not in the response\n";
    return kExitError;
  }
  out << (value->is_string() ? value->get<std::string>() : value->dump());
  // Like Vault's CLI: a newline for people, none when a script captures the value.
  if (&out == &std::cout && ::isatty(STDOUT_FILENO)) out << "\n";
  return kExitOk;
}

// Selects what json and yaml print without -raw: data, else auth, else an unenveloped reply
// whole.
const json& StructuredPayload(const Globals& globals, const json& response) {
  if (globals.raw || !IsEnvelope(response)) return response;
  if (const json& data = Member(response, "data"); !data.is_null()) return data;
  return Member(response, "auth");
}

void PrintStructured(const Globals& globals, const json& value, std::ostream& out) {
  if (value.is_null()) return;
  if (globals.format == OutputFormat::kJson) {
    out << value.dump(2) << "\n";
  } else {
    out << ToYaml(value);
  }
}

void PrintWarnings(const json& response, std::ostream& err) {
  const json& warnings = Member(response, "warnings");
  if (!warnings.is_array()) return;
  for (const auto& warning : warnings) {
    if (warning.is_string()) err << "warning: " << warning.get<std::string>() << "\n";
  }
}

// True for strings that a YAML 1.1 or 1.2 reader would turn into a number, boolean, null or
// timestamp, and that therefore need quotes to stay strings.
bool YamlWouldRetype(const std::string& text) {
  static const std::regex kNonString(
      "|~|null|Null|NULL"
      "|y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF"
      "|[-+]?(\\.[0-9]+|[0-9][0-9_]*(\\.[0-9_]*)?)([eE][-+]?[0-9]+)?"
      "|[-+]?0x[0-9a-fA-F_]+|0o[0-7]+|[-+]?0b[01_]+"
      "|[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\\.[0-9_]*)?"
      "|[-+]?\\.(inf|Inf|INF)|\\.(nan|NaN|NAN)"
      "|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ].*)?");
  return std::regex_match(text, kNonString);
}

void EmitYaml(YAML::Emitter& emitter, const json& value) {
  switch (value.type()) {
    case json::value_t::object:
      if (value.empty()) emitter << YAML::Flow;
      emitter << YAML::BeginMap;
      for (const auto& [key, item] : value.items()) {
        emitter << YAML::Key;
        if (YamlWouldRetype(key)) emitter << YAML::DoubleQuoted;
        emitter << key << YAML::Value;
        EmitYaml(emitter, item);
      }
      emitter << YAML::EndMap;
      break;
    case json::value_t::array:
      if (value.empty()) emitter << YAML::Flow;
      emitter << YAML::BeginSeq;
      for (const auto& item : value) EmitYaml(emitter, item);
      emitter << YAML::EndSeq;
      break;
    case json::value_t::string: {
      const auto& text = value.get_ref<const std::string&>();
      if (YamlWouldRetype(text)) emitter << YAML::DoubleQuoted;
      emitter << text;
      break;
    }
    case json::value_t::boolean:
      emitter << value.get<bool>();
      break;
    case json::value_t::null:
    case json::value_t::discarded:
      emitter << YAML::Null;
      break;
    default:
      // Numbers keep the JSON spelling, which is also a YAML number. The emitter's own double
      // formatting would print 0.1 as 0.10000000000000001.
      emitter << value.dump();
      break;
  }
}

}  // namespace

std::string ToYaml(const nlohmann::json& value) {
  YAML::Emitter emitter;
  emitter.SetNullFormat(YAML::LowerNull);
  EmitYaml(emitter, value);
  std::string text = emitter.c_str();
  if (!text.ends_with('\n')) text += '\n';
  return text;
}

void PrintTable(std::ostream& out, const std::vector<std::string>& headers,
                const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths;
  for (const auto& header : headers) widths.push_back(header.size());
  for (const auto& row : rows) {
    for (std::size_t column = 0; column < row.size(); ++column) {
      if (column >= widths.size()) widths.push_back(0);
      widths[column] = std::max(widths[column], row[column].size());
    }
  }

  // The last cell is not padded, so lines carry no trailing spaces.
  const auto print_row = [&](const std::vector<std::string>& cells) {
    for (std::size_t column = 0; column < cells.size(); ++column) {
      out << cells[column];
      if (column + 1 < cells.size()) {
        out << std::string(widths[column] - cells[column].size() + 2, ' ');
      }
    }
    out << "\n";
  };
  std::vector<std::string> underline;
  for (const auto& header : headers) underline.emplace_back(header.size(), '-');
  print_row(headers);
  print_row(underline);
  for (const auto& row : rows) print_row(row);
}

int PrintResponse(const Globals& globals, const nlohmann::json& response, std::ostream& out,
                  std::ostream& err) {
  PrintWarnings(response, err);
  if (!globals.field.empty()) return PrintField(globals, response, out, err);
  if (globals.format != OutputFormat::kTable) {
    PrintStructured(globals, StructuredPayload(globals, response), out);
    return kExitOk;
  }

  std::vector<std::vector<std::string>> rows;
  if (!IsEnvelope(response)) {
    if (response.is_object()) {
      for (const auto& [key, value] : response.items()) rows.push_back({key, CellText(value)});
    } else if (!response.is_null()) {
      rows.push_back({"value", CellText(response)});
    }
  } else {
    if (const json& lease_id = Member(response, "lease_id");
        lease_id.is_string() && !lease_id.get_ref<const std::string&>().empty()) {
      rows.push_back({"lease_id", lease_id.get<std::string>()});
      rows.push_back({"lease_duration", DurationCell(Member(response, "lease_duration"), false)});
      rows.push_back({"lease_renewable", CellText(Member(response, "renewable"))});
    }
    if (const json& auth = Member(response, "auth"); auth.is_object()) {
      for (auto& [key, value] : AuthRows(auth)) rows.push_back({key, value});
    }
    if (const json& data = Member(response, "data"); data.is_object()) {
      for (const auto& [key, value] : data.items()) rows.push_back({key, CellText(value)});
    } else if (!data.is_null()) {
      rows.push_back({"value", CellText(data)});
    }
  }
  if (!rows.empty()) PrintTable(out, {"Key", "Value"}, rows);
  return kExitOk;
}

int PrintList(const Globals& globals, const nlohmann::json& response, std::ostream& out,
              std::ostream& err) {
  if (!globals.field.empty()) return PrintResponse(globals, response, out, err);
  PrintWarnings(response, err);
  const json& keys = Member(Member(response, "data"), "keys");
  if (!keys.is_array()) {
    err << "error: the response has no list of keys (data.keys)\n";
    return kExitError;
  }
  if (globals.format != OutputFormat::kTable) {
    PrintStructured(globals, globals.raw ? response : keys, out);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& key : keys) rows.push_back({CellText(key)});
  PrintTable(out, {"Keys"}, rows);
  return kExitOk;
}

int ReportServerError(const HttpReply& reply, std::string_view action, std::ostream& err) {
  err << "error: " << action << ": the server answered " << reply.status;
  const json& errors = Member(reply.json, "errors");
  std::string separator = ": ";
  if (errors.is_array()) {
    for (const auto& message : errors) {
      if (!message.is_string()) continue;
      err << separator << message.get<std::string>();
      separator = "; ";
    }
  }
  err << "\n";
  return kExitError;
}

int ReportFailure(const Error& error, std::ostream& err) {
  err << "error: " << error.message() << "\n";
  return kExitError;
}

int ReportUsage(std::string_view message, const Command& command, std::ostream& err) {
  err << "usage error: " << message << "\n"
      << "usage: " << command.usage << "\n"
      << "Run \"keyward " << command.name << " -help\" for the flags and an example.\n";
  return kExitUsage;
}

}  // namespace kw::cli
