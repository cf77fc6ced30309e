#include "vault/database/statements.hpp"

#include <doctest/doctest.h>

#include <set>
#include <string>

#include "vault/database/database_roles.hpp"
#include "vault/database/postgres_connection.hpp"

namespace kw::vault::database {
namespace {

// Renders `statement` with an unconnected libpq handle and returns the SQL text.
std::string Render(std::string_view statement, const TemplateValues& values) {
  const PostgresConnection quoting = PostgresConnection::Unconnected();
  auto rendered = RenderTemplate(statement, values, quoting);
  REQUIRE(rendered.has_value());
  return std::string(rendered->RevealText());
}

TemplateValues Values(std::string_view name, std::string_view password,
                      std::string_view expiration) {
  return {.name = name, .password = password, .expiration = expiration};
}

}  // namespace

TEST_SUITE("vault/database/statements") {
  TEST_CASE("vault-style quoted placeholders take the quotes' place") {
    const std::string sql = Render(
        "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL "
        "'{{expiration}}'",
        Values("v-a\"b", "x'y", "2030-01-01 00:00:00+0000"));
    CHECK(sql ==
          "CREATE ROLE \"v-a\"\"b\" WITH LOGIN PASSWORD 'x''y' VALID UNTIL "
          "'2030-01-01 00:00:00+0000'");
  }

  TEST_CASE("bare placeholders are quoted by kind") {
    const std::string sql =
        Render("CREATE ROLE {{name}} PASSWORD {{password}} VALID UNTIL {{expiration}}",
               Values("v-app", "pw", "2030-01-01 00:00:00+0000"));
    CHECK(sql == "CREATE ROLE \"v-app\" PASSWORD 'pw' VALID UNTIL '2030-01-01 00:00:00+0000'");
  }

  TEST_CASE("username is an alias of name") {
    CHECK(Render("DROP ROLE {{username}}", Values("r", "", "")) == "DROP ROLE \"r\"");
  }

  TEST_CASE("injection attempts stay inside the quoted value") {
    SUBCASE("literal breaking out") {
      const std::string sql = Render("ALTER ROLE {{name}} PASSWORD '{{password}}'",
                                     Values("r", "'; DROP TABLE users; --", ""));
      CHECK(sql == "ALTER ROLE \"r\" PASSWORD '''; DROP TABLE users; --'");
    }
    SUBCASE("identifier breaking out") {
      const std::string sql = Render("DROP ROLE \"{{name}}\"", Values("x\"; DROP ROLE admin; --",
                                                                      "", ""));
      CHECK(sql == "DROP ROLE \"x\"\"; DROP ROLE admin; --\"");
    }
    SUBCASE("backslash in a literal") {
      // Without a server, libpq assumes standard_conforming_strings off and uses E''.
      const std::string sql = Render("SELECT {{password}}", Values("r", "a\\'b", ""));
      CHECK(sql == "SELECT  E'a\\\\''b'");
    }
  }

  TEST_CASE("placeholder inside a larger quoted string is rejected") {
    const PostgresConnection quoting = PostgresConnection::Unconnected();
    auto rendered = RenderTemplate("COMMENT ON ROLE {{name}} IS 'for {{name}}'",
                                   Values("r", "", ""), quoting);
    REQUIRE_FALSE(rendered.has_value());
    CHECK(rendered.error().code() == Code::kInvalidArgument);
    CHECK(ValidateTemplate("SELECT '{{password}} x'").error().code() ==
          Code::kInvalidArgument);
    CHECK(ValidateTemplate("SELECT 1 -- {{password}}").error().code() ==
          Code::kInvalidArgument);
  }

  TEST_CASE("unknown placeholder is rejected") {
    auto valid = ValidateTemplate("GRANT {{role}} TO {{name}}");
    REQUIRE_FALSE(valid.has_value());
    CHECK(valid.error().code() == Code::kInvalidArgument);
  }

  TEST_CASE("unterminated quote is rejected") {
    CHECK_FALSE(ValidateTemplate("SELECT 'abc").has_value());
  }

  TEST_CASE("placeholder without value is rejected") {
    const PostgresConnection quoting = PostgresConnection::Unconnected();
    auto rendered = RenderTemplate("ALTER ROLE {{name}} PASSWORD {{password}}",
                                   Values("r", "", ""), quoting);
    REQUIRE_FALSE(rendered.has_value());
    CHECK(rendered.error().code() == Code::kInvalidArgument);
  }

  TEST_CASE("error messages never contain the password") {
    const PostgresConnection quoting = PostgresConnection::Unconnected();
    auto rendered = RenderTemplate("SELECT {{password}} {{nope}}",
                                   Values("r", "Sup3rSecretValue", ""), quoting);
    REQUIRE_FALSE(rendered.has_value());
    CHECK(rendered.error().message().find("Sup3rSecretValue") == std::string::npos);
    CHECK(RedactSecrets("bad 'Sup3rSecretValue' here", {"Sup3rSecretValue"}) ==
          "bad '[redacted]' here");
  }

  TEST_CASE("split at semicolons outside quotes") {
    const auto statements = SplitStatements(
        "CREATE ROLE \"a;b\" PASSWORD 'x;y';\n GRANT SELECT ON t TO \"a;b\";;"
        "DO $$BEGIN PERFORM 1; END$$; -- trailing; comment\n");
    REQUIRE(statements.size() == 4);
    CHECK(statements[0] == "CREATE ROLE \"a;b\" PASSWORD 'x;y'");
    CHECK(statements[1] == "GRANT SELECT ON t TO \"a;b\"");
    CHECK(statements[2] == "DO $$BEGIN PERFORM 1; END$$");
    CHECK(statements[3] == "-- trailing; comment");
  }

  TEST_CASE("split of a list concatenates") {
    const auto statements = SplitStatements(std::vector<std::string>{"A; B", "C"});
    CHECK(statements == std::vector<std::string>{"A", "B", "C"});
  }

  TEST_CASE("expiration format is PostgreSQL timestamptz in UTC") {
    CHECK(FormatExpiration(1906502400) == "2030-06-01 00:00:00+0000");
    CHECK(FormatExpiration(0) == "1970-01-01 00:00:00+0000");
  }
}

TEST_SUITE("vault/database/credentials") {
  TEST_CASE("generated names fit and are unique") {
    std::set<std::string> names;
    for (int i = 0; i < 1000; ++i) {
      const std::string name = GenerateUsername("approle-some-very-long-display-name",
                                                "readonly-role-with-long-name", 1906531200);
      CHECK(name.size() <= kMaxRoleNameBytes);
      names.insert(name);
    }
    CHECK(names.size() == 1000);
  }

  TEST_CASE("generated names use the restricted alphabet") {
    const std::string name = GenerateUsername("Tok\"en'; --", "Ro/le", 1906531200);
    CHECK(name.starts_with("v-tok_en__-ro_le-"));
    CHECK(name.ends_with("-1906531200"));
    for (char c : name) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
      CHECK(ok);
    }
  }

  TEST_CASE("generated passwords are long and alphanumeric") {
    std::set<std::string> seen;
    for (int i = 0; i < 100; ++i) {
      const SecretBuffer password = GeneratePassword();
      const std::string text(password.RevealText());
      CHECK(text.size() >= 32);
      for (char c : text) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        CHECK(ok);
      }
      seen.insert(text);
    }
    CHECK(seen.size() == 100);
  }
}

}  // namespace kw::vault::database
