// The client side of the keyward binary: finds the command named by the leading words of the
// command line, parses its flags, and prints the overview and per-command help.
#include "cli/client_commands.hpp"

#include <algorithm>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "cli/cli.hpp"

namespace kw::cli {
namespace {

// NOTE: the server reports its own copy of the version (api/sys_handlers.cpp). Keep both equal
// to the project version in meson.build.
constexpr std::string_view kVersion = "0.1.0";

// One-line summaries of the command groups, in the order the overview lists them. A group
// missing here is listed after these with its command names as the summary.
constexpr std::pair<std::string_view, std::string_view> kGroupSummaries[] = {
    {"kv", "Read and write secrets in the KV version 2 engine"},
    {"token", "Create, look up, renew and revoke tokens"},
    {"policy", "Write, read, list and delete ACL policies"},
    {"lease", "Look up, renew and revoke leases"},
    {"database", "Get credentials from the database engine"},
    {"pki", "Issue and sign SPIFFE X.509-SVIDs"},
    {"audit", "Verify, query and export the audit log"},
    {"operator", "Initialize, seal and unseal the server"},
};

struct GlobalFlagHelp {
  std::string_view flag;
  std::string_view help;
};
constexpr GlobalFlagHelp kGlobalFlagHelp[] = {
    {"-address=URL", "server address (KEYWARD_ADDR, VAULT_ADDR; default http://127.0.0.1:8200)"},
    {"-token=TOKEN",
     "token sent as X-Vault-Token (KEYWARD_TOKEN, VAULT_TOKEN, then ~/.keyward-token)"},
    {"-ca-cert=FILE", "PEM file of CA certificates that verify the server (KEYWARD_CACERT)"},
    {"-client-cert=FILE", "PEM client certificate for TLS (KEYWARD_CLIENT_CERT)"},
    {"-client-key=FILE", "PEM key of the client certificate (KEYWARD_CLIENT_KEY)"},
    {"-tls-skip-verify", "do not verify the server's certificate (KEYWARD_SKIP_VERIFY)"},
    {"-format=FORMAT", "output format: table, json or yaml (KEYWARD_FORMAT; default table)"},
    {"-field=NAME", "print only this field of the response, raw, for scripts"},
    {"-raw", "with -format=json or yaml, print the whole response instead of its data"},
};

std::vector<std::string> SplitWords(std::string_view text) {
  std::vector<std::string> words;
  std::istringstream stream{std::string(text)};
  for (std::string word; stream >> word;) words.push_back(word);
  return words;
}

std::string FirstWord(const std::string& name) { return name.substr(0, name.find(' ')); }

bool IsHelpWord(std::string_view arg) {
  return arg == "-help" || arg == "--help" || arg == "-h" || arg == "help";
}

void PrintGlobalFlags(std::ostream& out) {
  std::size_t width = 0;
  for (const auto& flag : kGlobalFlagHelp) width = std::max(width, flag.flag.size());
  out << "Global flags (allowed anywhere on the command line; flags beat KEYWARD_* variables,\n"
         "which beat VAULT_* variables):\n";
  for (const auto& flag : kGlobalFlagHelp) {
    out << "  " << flag.flag << std::string(width - flag.flag.size() + 2, ' ') << flag.help
        << "\n";
  }
}

// Prints `commands` as an indented two-column list of names and summaries.
void PrintCommandList(const std::vector<const Command*>& commands, std::ostream& out) {
  std::size_t width = 0;
  for (const Command* command : commands) width = std::max(width, command->name.size());
  for (const Command* command : commands) {
    out << "  " << command->name << std::string(width - command->name.size() + 2, ' ')
        << command->summary << "\n";
  }
}

// Groups the commands by their first word: single-word commands first, then the groups in
// kGroupSummaries order, then any other group.
std::vector<std::pair<std::string, std::vector<const Command*>>> GroupCommands(
    const std::vector<Command>& commands) {
  std::vector<const Command*> single;
  std::map<std::string, std::vector<const Command*>> groups;
  for (const auto& command : commands) {
    if (command.name.find(' ') == std::string::npos && !groups.contains(command.name)) {
      single.push_back(&command);
    } else {
      groups[FirstWord(command.name)].push_back(&command);
    }
  }
  // A single-word command that also names a group is listed with that group.
  std::erase_if(single, [&](const Command* command) {
    if (!groups.contains(command->name)) return false;
    auto& members = groups[command->name];
    members.insert(members.begin(), command);
    return true;
  });

  std::vector<std::pair<std::string, std::vector<const Command*>>> ordered;
  ordered.emplace_back("", std::move(single));
  for (const auto& [group, summary] : kGroupSummaries) {
    if (auto it = groups.find(std::string(group)); it != groups.end()) {
      ordered.emplace_back(it->first, std::move(it->second));
      groups.erase(it);
    }
  }
  for (auto& [group, members] : groups) ordered.emplace_back(group, std::move(members));
  return ordered;
}

std::string GroupSummary(const std::string& group, const std::vector<const Command*>& members) {
  for (const auto& [name, summary] : kGroupSummaries) {
    if (name == group) return std::string(summary);
  }
  std::string names;
  for (const Command* command : members) names += (names.empty() ? "" : ", ") + command->name;
  return "Commands: " + names;
}

void PrintOverview(const std::vector<Command>& commands, std::ostream& out) {
  out << "Usage: keyward <command> [flags] [arguments]\n\n"
         "keyward is a secrets vault that speaks Vault's HTTP API. \"keyward server\" runs the\n"
         "server; every other command is a client of a running server.\n\n"
         "Commands:\n";
  const auto groups = GroupCommands(commands);
  // main() runs `server` before the command table is built, but it belongs in the list.
  Command server;
  server.name = "server";
  server.summary = "Run the server (keyward server -dev, keyward server -config=FILE)";
  std::vector<const Command*> top_level = groups.front().second;
  top_level.push_back(&server);
  PrintCommandList(top_level, out);
  for (std::size_t i = 1; i < groups.size(); ++i) {
    const auto& [group, members] = groups[i];
    out << "\n" << group << ": " << GroupSummary(group, members) << "\n";
    PrintCommandList(members, out);
  }
  out << "\n";
  PrintGlobalFlags(out);
  out << "\nRun \"keyward <command> -help\" for a command's flags and an example.\n";
}

void PrintGroupHelp(const std::string& group, const std::vector<Command>& commands,
                    std::ostream& out) {
  std::vector<const Command*> members;
  for (const auto& command : commands) {
    if (command.name.starts_with(group + " ")) members.push_back(&command);
  }
  out << "Usage: keyward " << group << " <subcommand> [flags] [arguments]\n\n"
      << GroupSummary(group, members) << ".\n\nSubcommands:\n";
  PrintCommandList(members, out);
  out << "\nRun \"keyward " << group << " <subcommand> -help\" for its flags and an example.\n";
}

// Returns the Levenshtein distance of `a` and `b`, for suggesting a command after a typo.
std::size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// Names of commands close to `typed`: at most two edits away, else the commands of `group`,
// else those whose first word is one edit away.
std::vector<std::string> CloseCommands(const std::string& typed, const std::string& group,
                                       const std::vector<Command>& commands) {
  std::vector<std::string> close;
  for (const auto& command : commands) {
    if (EditDistance(typed, command.name) <= 2) close.push_back(command.name);
  }
  if (!close.empty()) return close;
  const std::string first_typed = FirstWord(typed);
  for (const auto& command : commands) {
    const bool in_group = !group.empty() && command.name.starts_with(group + " ");
    if (in_group || (group.empty() && EditDistance(first_typed, FirstWord(command.name)) <= 1)) {
      close.push_back(command.name);
    }
  }
  return close;
}

// Reports an unknown command. Only the group and the one word after it are repeated, because
// later arguments may be secrets.
int ReportUnknownCommand(const std::vector<std::string>& words, const std::string& group,
                         const std::vector<Command>& commands, std::ostream& err) {
  const std::size_t group_words = group.empty() ? 0 : SplitWords(group).size();
  std::string typed = group;
  if (group_words < words.size()) typed += (typed.empty() ? "" : " ") + words[group_words];
  err << "usage error: unknown command \"" << typed << "\"\n";
  const auto close = CloseCommands(typed, group, commands);
  if (!close.empty()) {
    err << "Did you mean one of these?\n";
    for (const auto& name : close) err << "  keyward " << name << "\n";
  }
  err << "Run \"keyward -help\" for the list of commands.\n";
  return kExitUsage;
}

// Finds the command whose name matches the longest run of leading words of `rest`. Returns it
// and the number of words it took.
std::pair<const Command*, std::size_t> FindCommand(const std::vector<std::string>& rest,
                                                   const std::vector<Command>& commands) {
  const Command* found = nullptr;
  std::size_t found_words = 0;
  for (const auto& command : commands) {
    const auto words = SplitWords(command.name);
    if (words.size() <= found_words || words.size() > rest.size()) continue;
    if (std::equal(words.begin(), words.end(), rest.begin())) {
      found = &command;
      found_words = words.size();
    }
  }
  return {found, found_words};
}

// Returns the longest run of leading words of `args` that starts the names of other commands
// ("kv", "kv metadata"); empty when there is none.
std::string FindGroup(const std::vector<std::string>& args, const std::vector<Command>& commands) {
  std::string group;
  std::string prefix;
  for (const auto& word : args) {
    if (word.starts_with('-')) break;
    prefix += (prefix.empty() ? "" : " ") + word;
    const bool starts_others = std::any_of(commands.begin(), commands.end(), [&](const Command& c) {
      return c.name.starts_with(prefix + " ");
    });
    if (!starts_others) break;
    group = prefix;
  }
  return group;
}

Command VersionCommand() {
  return Command{
      .name = "version",
      .usage = "keyward version",
      .summary = "Print the version of this binary",
      .example = "keyward version",
      .flags = {},
      .run = [](Context& context, const Args& args) {
        if (!args.positional.empty()) {
          return ReportUsage("version takes no arguments", VersionCommand(), context.err);
        }
        context.out << "keyward " << kVersion << "\n";
        return kExitOk;
      }};
}

}  // namespace

void PrintCommandHelp(const Command& command, std::ostream& out) {
  out << "Usage: " << command.usage << "\n\n" << command.summary << "\n";
  if (!command.flags.empty()) {
    std::size_t width = 0;
    const auto label = [](const FlagSpec& flag) {
      return "-" + flag.name + (flag.takes_value ? "=VALUE" : "");
    };
    for (const auto& flag : command.flags) width = std::max(width, label(flag).size());
    out << "\nFlags:\n";
    for (const auto& flag : command.flags) {
      const std::string text = label(flag);
      out << "  " << text << std::string(width - text.size() + 2, ' ') << flag.help << "\n";
    }
  }
  out << "\n";
  PrintGlobalFlags(out);
  out << "\nExample:\n  " << command.example << "\n";
}

int RunClient(const std::vector<std::string>& args) {
  std::vector<Command> commands;
  AddGenericCommands(commands);
  AddKvCommands(commands);
  AddAdminCommands(commands);
  commands.push_back(VersionCommand());

  auto parsed = ParseGlobals(args);
  if (!parsed) {
    std::cerr << "usage error: " << parsed.error().message() << "\n"
              << "Run \"keyward -help\" for the global flags.\n";
    return kExitUsage;
  }
  Globals& globals = parsed->globals;
  const std::vector<std::string>& rest = parsed->rest;

  if (rest.empty() || (rest.size() == 1 && IsHelpWord(rest[0]))) {
    PrintOverview(commands, rest.empty() ? std::cerr : std::cout);
    return rest.empty() ? kExitUsage : kExitOk;
  }
  std::vector<std::string> words = rest;
  // Only in first place: "kv get -version=2" is a flag of its own.
  if (words[0] == "-version" || words[0] == "--version") words[0] = "version";
  if (words[0] == "help") {
    // "keyward help kv get" is "keyward kv get -help".
    words.erase(words.begin());
    words.push_back("-help");
  }

  if (words[0].starts_with('-')) {
    std::cerr << "usage error: unknown global flag " << words[0].substr(0, words[0].find('='))
              << "\nRun \"keyward -help\" for the commands and the global flags.\n";
    return kExitUsage;
  }

  auto [command, word_count] = FindCommand(words, commands);
  if (command == nullptr) {
    // A group alone prints its commands: to stdout with -help, as a usage error without.
    const std::string group = FindGroup(words, commands);
    if (!group.empty()) {
      const std::size_t group_words = SplitWords(group).size();
      const bool help = words.size() == group_words + 1 && IsHelpWord(words.back());
      if (words.size() == group_words || help) {
        if (!help) std::cerr << "usage error: \"keyward " << group << "\" needs a subcommand\n\n";
        PrintGroupHelp(group, commands, help ? std::cout : std::cerr);
        return help ? kExitOk : kExitUsage;
      }
    }
    return ReportUnknownCommand(words, group, commands, std::cerr);
  }

  const std::vector<std::string> command_args(
      words.begin() + static_cast<std::ptrdiff_t>(word_count), words.end());
  auto command_parse = ParseArgs(command_args, command->flags);
  if (!command_parse) return ReportUsage(command_parse.error().message(), *command, std::cerr);
  if (command_parse->help) {
    PrintCommandHelp(*command, std::cout);
    return kExitOk;
  }

  Context context{globals, std::cin, std::cout, std::cerr};
  return command->run(context, *command_parse);
}

}  // namespace kw::cli
