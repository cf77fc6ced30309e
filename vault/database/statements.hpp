#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"
#include "base/secret_buffer.hpp"
#include "vault/database/postgres_connection.hpp"

// SQL statement templates written by the operator (creation, revocation, renewal, rotation),
// with the placeholders {{name}} (also {{username}}), {{password}} and {{expiration}}.
// Values are never pasted: each placeholder becomes a quoted identifier or literal from
// libpq's PQescapeIdentifier / PQescapeLiteral. A placeholder written inside quotes
// ("{{name}}", '{{password}}', as in Vault's examples) takes the quotes' place, so Vault's
// templates work unchanged.
namespace kw::vault::database {

// The values a template may use. `password` and `expiration` may be empty when the template
// does not use them; using an empty one is invalid_argument.
struct TemplateValues {
  std::string_view name;
  std::string_view password;
  std::string_view expiration;
};

// Splits `text` into statements at semicolons outside quotes ('..', "..", $tag$..$tag$) and
// comments; trims whitespace and drops empty statements.
std::vector<std::string> SplitStatements(std::string_view text);

// Splits each entry of `texts` and concatenates the results.
std::vector<std::string> SplitStatements(const std::vector<std::string>& texts);

// Checks that `statement` uses only known placeholders, none inside a quoted string or
// comment, and that quotes are balanced. invalid_argument naming the problem otherwise.
Status ValidateTemplate(std::string_view statement);

// Returns `statement` with its placeholders replaced by values quoted through `connection`.
// The result may contain the password, so it comes in a SecretBuffer.
Result<SecretBuffer> RenderTemplate(std::string_view statement, const TemplateValues& values,
                                    const PostgresConnection& connection);

// Formats Unix time `seconds` as PostgreSQL timestamptz text in UTC, as Vault does:
// "2030-06-01 10:00:00+0000".
std::string FormatExpiration(std::int64_t seconds);

}  // namespace kw::vault::database
