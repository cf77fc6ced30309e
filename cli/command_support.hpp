#pragma once

#include <functional>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

#include "cli/cli.hpp"

// Helpers that the generic and the kv commands share. Defined in commands_generic.cpp.
namespace kw::cli {

// A command body that also receives its own Command, so that it can call ReportUsage.
using CommandBody = std::function<int(Context&, const Args&, const Command&)>;

// A Command without its run function, written with designated initializers.
struct CommandSpec {
  std::string name;
  std::string usage;
  std::string summary;
  std::string example;
  std::vector<FlagSpec> flags;
};

// Returns the Command of `spec` whose run function calls `body` with that Command.
Command MakeCommand(CommandSpec spec, CommandBody body);

// True for a 2xx status.
inline bool IsSuccess(int status) { return status >= 200 && status < 300; }

// Reads a secret from `source`: "-" reads stdin, "@FILE" reads the file. Surrounding
// whitespace is removed. invalid_argument naming `what` for any other source (a secret given
// as a plain argument stays in shell history), an unreadable file or an empty value.
Result<std::string> ReadSecretSource(std::string_view source, std::istream& in,
                                     std::string_view what);

// Prints "Success! <message>" in table format; json and yaml print nothing. Returns kExitOk.
int PrintSuccess(const Globals& globals, std::string_view message, std::ostream& out);

}  // namespace kw::cli
