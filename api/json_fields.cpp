#include "api/json_fields.hpp"

#include <algorithm>
#include <charconv>
#include <limits>
#include <set>
#include <vector>

#include "api/request_path.hpp"
#include "base/duration.hpp"

namespace kw::api {
namespace {

struct DepthExceeded {};
struct TooManyValues {};
struct DuplicateKey {
  std::string key;
};

tl::unexpected<Error> TypeError(std::string_view field, std::string_view expected) {
  return InvalidArgument("invalid type for field \"" + std::string(field) + "\": expected " +
                         std::string(expected));
}

const nlohmann::json* Find(const nlohmann::json& object, std::string_view field) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(std::string(field));
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

}  // namespace

std::optional<std::int64_t> ParseNonNegative(std::string_view text) {
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0 || text.empty()) {
    return std::nullopt;
  }
  return value;
}

Result<nlohmann::json> ParseBody(std::string_view text) {
  if (text.empty()) return nlohmann::json(nullptr);
  nlohmann::json body;
  try {
    // The callback receives the depth of every element. Throwing stops the parse early,
    // before a deeply nested body costs memory.
    std::size_t values = 0;
    // The keys seen so far in each object being parsed, innermost last. nlohmann::json keeps
    // the last of duplicate keys, and RFC 8259 leaves the choice to each parser, so a body with
    // duplicates could mean one thing to a proxy or audit reader and another to the handler.
    std::vector<std::set<std::string>> object_keys;
    body = nlohmann::json::parse(text, [&](int depth, nlohmann::json::parse_event_t event,
                                           nlohmann::json& parsed) {
      using Event = nlohmann::json::parse_event_t;
      if (depth > kMaxJsonDepth) throw DepthExceeded{};
      if (event == Event::value || event == Event::object_start || event == Event::array_start) {
        if (++values > kMaxJsonValues) throw TooManyValues{};
      }
      if (event == Event::object_start) object_keys.emplace_back();
      if (event == Event::object_end) object_keys.pop_back();
      if (event == Event::key && !object_keys.empty() &&
          !object_keys.back().insert(parsed.get<std::string>()).second) {
        throw DuplicateKey{parsed.get<std::string>()};
      }
      return true;
    });
  } catch (const TooManyValues&) {
    return InvalidArgument("failed to parse JSON input: more than " +
                           std::to_string(kMaxJsonValues) + " values");
  } catch (const DepthExceeded&) {
    return InvalidArgument("failed to parse JSON input: nesting deeper than " +
                           std::to_string(kMaxJsonDepth) + " levels");
  } catch (const DuplicateKey& duplicate) {
    return InvalidArgument("failed to parse JSON input: duplicate key \"" +
                           Printable(duplicate.key) + "\"");
  } catch (const nlohmann::json::parse_error& error) {
    return InvalidArgument("failed to parse JSON input: syntax error at byte " +
                           std::to_string(error.byte));
  } catch (const nlohmann::json::out_of_range&) {
    return InvalidArgument("failed to parse JSON input: a number is out of range");
  } catch (const std::exception&) {
    return InvalidArgument("failed to parse JSON input");
  }
  if (!body.is_object()) {
    return InvalidArgument("invalid request body: expected a JSON object");
  }
  return body;
}

Result<std::optional<std::int64_t>> OptionalInt(const nlohmann::json& object,
                                                std::string_view field) {
  const nlohmann::json* value = Find(object, field);
  if (value == nullptr) return std::optional<std::int64_t>();
  // An unsigned number above the int64 range would wrap to a negative value.
  if (value->is_number_unsigned() &&
      value->get<std::uint64_t>() >
          static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    return TypeError(field, "an integer up to 9223372036854775807");
  }
  if (value->is_number_integer()) return std::optional<std::int64_t>(value->get<std::int64_t>());
  if (value->is_number_float()) {
    const double number = value->get<double>();
    // Range first: casting a double outside int64's range is undefined behaviour.
    if (number < 9.2e18 && number > -9.2e18 &&
        number == static_cast<double>(static_cast<std::int64_t>(number))) {
      return std::optional<std::int64_t>(static_cast<std::int64_t>(number));
    }
  }
  if (value->is_string()) {
    const std::string& text = value->get_ref<const std::string&>();
    if (auto parsed = ParseNonNegative(text)) return std::optional<std::int64_t>(*parsed);
  }
  return TypeError(field, "an integer");
}

Result<std::optional<bool>> OptionalBool(const nlohmann::json& object, std::string_view field) {
  const nlohmann::json* value = Find(object, field);
  if (value == nullptr) return std::optional<bool>();
  if (value->is_boolean()) return std::optional<bool>(value->get<bool>());
  if (value->is_string()) {
    const std::string& text = value->get_ref<const std::string&>();
    if (text == "true" || text == "1") return std::optional<bool>(true);
    if (text == "false" || text == "0") return std::optional<bool>(false);
  }
  return TypeError(field, "a boolean");
}

Result<std::optional<std::string>> OptionalString(const nlohmann::json& object,
                                                  std::string_view field) {
  const nlohmann::json* value = Find(object, field);
  if (value == nullptr) return std::optional<std::string>();
  if (value->is_string()) return std::optional<std::string>(value->get<std::string>());
  return TypeError(field, "a string");
}

Result<std::optional<std::chrono::seconds>> OptionalDuration(const nlohmann::json& object,
                                                             std::string_view field) {
  const nlohmann::json* value = Find(object, field);
  if (value == nullptr) return std::optional<std::chrono::seconds>();
  std::optional<std::chrono::seconds> parsed;
  if (value->is_number_unsigned()) {
    // Clamped so a value beyond int64 cannot wrap to a negative duration.
    const std::uint64_t seconds = value->get<std::uint64_t>();
    parsed = std::chrono::seconds(std::min<std::uint64_t>(seconds, kMaxDuration.count() + 1));
  } else if (value->is_string()) {
    parsed = ParseDuration(value->get_ref<const std::string&>());
  }
  if (!parsed) {
    return TypeError(field, "a duration such as \"30s\", \"1h30m\" or a number of seconds");
  }
  if (*parsed > kMaxDuration) {
    return InvalidArgument("invalid value for field \"" + std::string(field) +
                           "\": the maximum is 876000h (100 years)");
  }
  return parsed;
}

Result<std::optional<std::map<std::string, std::string>>> OptionalStringMap(
    const nlohmann::json& object, std::string_view field) {
  using Map = std::map<std::string, std::string>;
  const nlohmann::json* value = Find(object, field);
  if (value == nullptr) return std::optional<Map>();
  if (!value->is_object()) return TypeError(field, "an object of strings");
  Map out;
  for (const auto& [key, item] : value->items()) {
    if (!item.is_string()) return TypeError(field, "an object of strings");
    out[key] = item.get<std::string>();
  }
  return std::optional<Map>(std::move(out));
}

Result<std::optional<std::vector<std::string>>> OptionalStringList(const nlohmann::json& object,
                                                                  std::string_view field) {
  using List = std::vector<std::string>;
  const nlohmann::json* value = Find(object, field);
  if (value == nullptr || value->is_null()) return std::optional<List>();
  List out;
  if (value->is_string()) {
    const std::string& text = value->get_ref<const std::string&>();
    std::size_t begin = 0;
    while (begin <= text.size()) {
      std::size_t comma = text.find(',', begin);
      if (comma == std::string::npos) comma = text.size();
      std::string item = text.substr(begin, comma - begin);
      const auto first = item.find_first_not_of(" \t");
      const auto last = item.find_last_not_of(" \t");
      if (first != std::string::npos) out.push_back(item.substr(first, last - first + 1));
      begin = comma + 1;
    }
    return std::optional<List>(std::move(out));
  }
  if (!value->is_array()) return TypeError(field, "a list of strings or a comma-separated string");
  for (const auto& item : *value) {
    if (!item.is_string()) return TypeError(field, "a list of strings");
    out.push_back(item.get<std::string>());
  }
  return std::optional<List>(std::move(out));
}

Result<std::vector<std::int64_t>> IntList(const nlohmann::json& object, std::string_view field) {
  std::vector<std::int64_t> out;
  const nlohmann::json* value = Find(object, field);
  if (value == nullptr) return out;
  const auto bad = [&] { return TypeError(field, "a list of positive integers"); };
  if (value->is_array()) {
    for (const auto& item : *value) {
      if (item.is_number_integer() && item.get<std::int64_t>() > 0) {
        out.push_back(item.get<std::int64_t>());
      } else if (item.is_string()) {
        auto parsed = ParseNonNegative(item.get_ref<const std::string&>());
        if (!parsed || *parsed == 0) return bad();
        out.push_back(*parsed);
      } else {
        return bad();
      }
    }
    return out;
  }
  if (value->is_string()) {
    std::string_view text = value->get_ref<const std::string&>();
    while (!text.empty()) {
      const std::size_t comma = text.find(',');
      auto parsed = ParseNonNegative(text.substr(0, comma));
      if (!parsed || *parsed == 0) return bad();
      out.push_back(*parsed);
      if (comma == std::string_view::npos) break;
      text.remove_prefix(comma + 1);
    }
    return out;
  }
  if (value->is_number_integer() && value->get<std::int64_t>() > 0) {
    out.push_back(value->get<std::int64_t>());
    return out;
  }
  return bad();
}

}  // namespace kw::api
