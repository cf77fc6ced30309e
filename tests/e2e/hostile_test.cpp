// The hostile request table (hostile_cases.cpp) against the real binary, over raw sockets so
// that nothing in between normalises the requests. After every row the server must still
// respond to sys/health, and every stored key outside the audit log must be unchanged.
#include <doctest/doctest.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/hostile_cases.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

std::string ReplaceAll(std::string text, std::string_view from, const std::string& to) {
  for (std::size_t at = text.find(from); at != std::string::npos;
       at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

std::string RequestFor(const HostileCase& row, const std::string& token) {
  if (!row.raw.empty()) return ReplaceAll(row.raw, kTokenPlaceholder, token);
  std::string headers = row.headers;
  if (row.authenticate) headers = "X-Vault-Token: " + std::string(kTokenPlaceholder) + "\r\n" + headers;
  return BuildRawRequest(row.method, row.target, ReplaceAll(headers, kTokenPlaceholder, token),
                         row.body);
}

// Every stored key and value except the audit log's, which records refused requests too.
std::vector<std::pair<std::string, std::string>> StoredState(const DevServer& server) {
  Database db(server.db_path());
  return db.Rows("SELECT key, hex(value) FROM kv WHERE key NOT LIKE 'sys/audit/%' ORDER BY key");
}

std::string ReadSource(const std::string& relative) {
  std::ifstream file(std::string(KEYWARD_SOURCE_DIR) + "/" + relative);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// The route prefixes that the router and the sys handlers match on, with the file each one
// comes from.
std::vector<std::pair<std::string, std::string>> RoutePrefixes() {
  struct Source {
    std::string file;
    std::regex pattern;
  };
  const std::vector<Source> sources = {
      {"api/router.cpp", std::regex(R"(c\.path(?:\.starts_with\(| == )\"([^\"]+)\")")},
      {"api/sys_handlers.cpp", std::regex(R"(path(?:\.starts_with\(| == )\"(sys/[^\"]+)\")")},
      {"api/audit_handlers.cpp", std::regex(R"(path(?:\.starts_with\(| == )\"(sys/[^\"]+)\")")},
      {"api/policy_handlers.cpp", std::regex(R"(path(?:\.starts_with\(| == )\"(sys/[^\"]+)\")")},
  };
  std::vector<std::pair<std::string, std::string>> prefixes;
  for (const Source& source : sources) {
    const std::string text = ReadSource(source.file);
    REQUIRE_MESSAGE(!text.empty(), "cannot read " << source.file);
    for (std::sregex_iterator it(text.begin(), text.end(), source.pattern), end; it != end; ++it) {
      prefixes.emplace_back((*it)[1].str(), source.file);
    }
  }
  return prefixes;
}

// Returns whether a row's target (below /v1/) falls under `prefix`.
bool Covers(const std::string& target, const std::string& prefix) {
  constexpr std::string_view kVersion = "/v1/";
  if (!target.starts_with(kVersion)) return false;
  std::string path = target.substr(kVersion.size());
  path = path.substr(0, path.find('?'));
  if (prefix.ends_with('/')) return path.starts_with(prefix);
  return path == prefix || path.starts_with(prefix + "/");
}

}  // namespace

TEST_SUITE("e2e/hostile") {
  TEST_CASE("hostile request table") {
    DevServer server;
    REQUIRE(server.Start());
    auto client = server.Client();
    const json known = {{"k", "known-value"}};
    REQUIRE(StatusOf(WriteSecret(*client, "known", known)) == 200);
    // Rows on an AppRole role's secret-id reach the field checks only when the role exists.
    REQUIRE(StatusOf(PostJson(*client, "/v1/auth/approle/role/hostile-role", json::object())) ==
            204);
    const auto stored = StoredState(server);
    REQUIRE(!stored.empty());

    const std::vector<HostileCase> rows = HostileCases();
    MESSAGE(rows.size() << " hostile requests");
    CHECK(rows.size() >= 80);
    for (const HostileCase& row : rows) {
      CAPTURE(row.family);
      CAPTURE(row.method);
      CAPTURE(row.target.substr(0, 100));
      CAPTURE(row.body.substr(0, 100));
      CAPTURE(row.raw.substr(0, 160));
      const auto started = std::chrono::steady_clock::now();
      const RawResponse response = SendRaw(server.port(), RequestFor(row, server.token()));
      const auto elapsed = std::chrono::steady_clock::now() - started;
      CAPTURE(response.head);
      CAPTURE(response.body.substr(0, 300));
      CHECK(response.status == row.status);
      CHECK(response.body.find(row.error) != std::string::npos);
      CHECK(response.body.find(kPlantedValue) == std::string::npos);
      CHECK(elapsed < std::chrono::seconds(5));

      CHECK(StatusOf(server.AnonymousClient()->Get("/v1/sys/health")) == 200);
      auto read = client->Get("/v1/secret/data/known");
      CHECK(StatusOf(read) == 200);
      CHECK(BodyOf(read)["data"]["data"] == known);
      CHECK(BodyOf(read)["data"]["metadata"]["version"] == 1);
      CHECK(StoredState(server) == stored);
    }
  }

  TEST_CASE("every route family has a hostile row") {
    const std::vector<HostileCase> rows = HostileCases();
    const auto prefixes = RoutePrefixes();
    REQUIRE(prefixes.size() >= 20);
    for (const auto& entry : prefixes) {
      const std::string& prefix = entry.first;
      const std::string& file = entry.second;
      bool covered = false;
      for (const HostileCase& row : rows) covered = covered || Covers(row.target, prefix);
      CHECK_MESSAGE(covered, "route \"" << prefix << "\" (matched in " << file
                                        << ") has no row in tests/e2e/hostile_cases.cpp: add "
                                           "a request it must reject to its family's list");
    }
  }
}  // TEST_SUITE

}  // namespace kw::e2e
