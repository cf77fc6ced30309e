// Command-line options of the benchmark programs: "--name value" or "--name=value", each name
// from a fixed list, repeatable where the program reads every occurrence. Errors raise
// std::invalid_argument with a message that names the option.
#pragma once

#include <charconv>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kw::bench {

class Options {
 public:
  // Parses argv. Every name in `known` takes a value; --help takes none.
  Options(int argc, char** argv, std::initializer_list<std::string_view> known) {
    for (int i = 1; i < argc; ++i) {
      std::string_view argument = argv[i];
      if (argument == "--help" || argument == "-h") {
        help_ = true;
        continue;
      }
      if (!argument.starts_with("--")) {
        throw std::invalid_argument("unexpected argument \"" + std::string(argument) + "\"");
      }
      std::string name(argument.substr(2));
      std::string value;
      if (std::size_t equals = name.find('='); equals != std::string::npos) {
        value = name.substr(equals + 1);
        name.resize(equals);
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        throw std::invalid_argument("option --" + name + " needs a value");
      }
      bool is_known = false;
      for (std::string_view candidate : known) is_known = is_known || candidate == name;
      if (!is_known) throw std::invalid_argument("unknown option --" + name + "; see --help");
      values_.emplace_back(std::move(name), std::move(value));
    }
  }

  bool help() const { return help_; }

  bool Has(std::string_view name) const { return !All(name).empty(); }

  // Returns the last value given for `name`, or `fallback`.
  std::string Get(std::string_view name, std::string fallback = "") const {
    std::vector<std::string> all = All(name);
    return all.empty() ? fallback : all.back();
  }

  std::vector<std::string> All(std::string_view name) const {
    std::vector<std::string> found;
    for (const auto& [key, value] : values_) {
      if (key == name) found.push_back(value);
    }
    return found;
  }

  // Returns the value of `name` as a number in [minimum, maximum], or `fallback` when absent.
  double GetNumber(std::string_view name, double fallback, double minimum, double maximum) const {
    if (!Has(name)) return fallback;
    std::string text = Get(name);
    double value = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc() || end != text.data() + text.size() || !(value >= minimum) ||
        !(value <= maximum)) {
      throw std::invalid_argument("--" + std::string(name) + " must be a number from " +
                                  Format(minimum) + " to " + Format(maximum) + ", not \"" + text +
                                  "\"");
    }
    return value;
  }

  // Same as GetNumber for whole numbers.
  std::uint64_t GetCount(std::string_view name, std::uint64_t fallback, std::uint64_t minimum,
                         std::uint64_t maximum) const {
    if (!Has(name)) return fallback;
    std::string text = Get(name);
    std::uint64_t value = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc() || end != text.data() + text.size() || value < minimum ||
        value > maximum) {
      throw std::invalid_argument("--" + std::string(name) + " must be a whole number from " +
                                  std::to_string(minimum) + " to " + std::to_string(maximum) +
                                  ", not \"" + text + "\"");
    }
    return value;
  }

 private:
  static std::string Format(double value) {
    std::string text = std::to_string(value);
    text.erase(text.find_last_not_of('0') + 1);
    if (text.ends_with('.')) text.pop_back();
    return text;
  }

  bool help_ = false;
  std::vector<std::pair<std::string, std::string>> values_;
};

}  // namespace kw::bench
