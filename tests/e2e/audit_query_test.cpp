// Audit record queries (sys/audit/records), the stored checkpoints (sys/audit/checkpoints) and
// pruning (sys/audit/prune) through the real binary.
#include <doctest/doctest.h>

#include <algorithm>
#include <ctime>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/server_process.hpp"
#include "tests/unit/vault/auth/test_certificates.hpp"

namespace kw::e2e {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kSoftHsmModule = "/usr/lib/softhsm/libsofthsm2.so";

// A policy for test tokens: KV access and creating child tokens, nothing under sys/.
constexpr std::string_view kWorkerPolicy = R"(
path "secret/*" { capabilities = ["create", "read", "update"] }
path "auth/token/create" { capabilities = ["update"] }
)";

struct Issued {
  std::string token;
  std::string accessor;
};

Issued CreateToken(httplib::Client& parent, const json& body) {
  auto created = PostJson(parent, "/v1/auth/token/create", body);
  REQUIRE_MESSAGE(StatusOf(created) == 200, BodyOf(created).dump());
  const json auth = BodyOf(created)["auth"];
  return Issued{auth["client_token"].get<std::string>(), auth["accessor"].get<std::string>()};
}

void WritePolicy(httplib::Client& root, const std::string& name, std::string_view document) {
  auto written = PostJson(root, "/v1/sys/policies/acl/" + name, {{"policy", document}});
  REQUIRE_MESSAGE(StatusOf(written) == 204, BodyOf(written).dump());
}

std::string OwnAccessor(httplib::Client& client) {
  auto self = client.Get("/v1/auth/token/lookup-self");
  REQUIRE(StatusOf(self) == 200);
  return BodyOf(self)["data"]["accessor"].get<std::string>();
}

std::string ErrorsOf(const httplib::Result& result) {
  const json body = BodyOf(result);
  return body.is_object() ? body.value("errors", json::array()).dump() : "";
}

// Returns data of GET sys/audit/records?`query`; REQUIREs 200.
json QueryRecords(httplib::Client& client, const std::string& query) {
  auto result = client.Get("/v1/sys/audit/records?" + query);
  REQUIRE_MESSAGE(StatusOf(result) == 200, ErrorsOf(result));
  return BodyOf(result)["data"];
}

// Follows `next` from the first page to the last; returns every record and the page count.
std::vector<json> AllRecords(httplib::Client& client, const std::string& query,
                             int* pages = nullptr) {
  std::vector<json> records;
  std::string after;
  for (int page = 1;; ++page) {
    REQUIRE_MESSAGE(page < 1000, "paging does not end");
    const json data = QueryRecords(client, query + after);
    for (const json& record : data["records"]) records.push_back(record);
    if (pages) *pages = page;
    if (data["next"].is_null()) break;
    after = "&after=" + std::to_string(data["next"].get<std::uint64_t>());
  }
  return records;
}

std::vector<std::uint64_t> Sequences(const std::vector<json>& records) {
  std::vector<std::uint64_t> sequences;
  for (const json& record : records) sequences.push_back(record["seq"].get<std::uint64_t>());
  return sequences;
}

bool ChainContains(const json& record, const std::string& accessor) {
  for (const json& entry : record["delegation_chain"]) {
    if (entry == accessor) return true;
  }
  return false;
}

// The server rejects a config or PIN file that other users can read.
void WriteText(const fs::path& path, const std::string& text) { WriteTextFile(path, text, 0600); }

// A SoftHSM token and a -config file for it; the server starts uninitialised and Init makes
// it usable.
struct ConfigServer {
  TempDir dir;
  fs::path softhsm_conf = dir.path() / "softhsm2.conf";
  fs::path config_path = dir.path() / "keyward.json";
  std::string softhsm_env = "SOFTHSM2_CONF=" + softhsm_conf.string();
  std::unique_ptr<ServerProcess> process;

  // Creates the token and starts the server with `extra` merged into the configuration.
  void Start(const json& extra) {
    fs::create_directories(dir.path() / "tokens");
    WriteText(softhsm_conf, "directories.tokendir = " + (dir.path() / "tokens").string() +
                                "\nobjectstore.backend = file\nlog.level = ERROR\n");
    WriteText(dir.path() / "pin", "e2e-user-pin-1234");
    const ExitResult token_init = RunProgram(
        "/usr/bin/softhsm2-util",
        {"--init-token", "--free", "--label", "e2e-query", "--pin", "e2e-user-pin-1234",
         "--so-pin", "e2e-so-pin-5678"},
        {softhsm_env});
    REQUIRE_MESSAGE(token_init.exit_code == 0, token_init.out << token_init.err);

    json config = {{"listener", {{"address", "127.0.0.1:0"}}},
                   {"storage", {{"path", (dir.path() / "keyward.db").string()}}},
                   {"hsm",
                    {{"module", std::string(kSoftHsmModule)},
                     {"token_label", "e2e-query"},
                     {"pin_file", (dir.path() / "pin").string()}}}};
    config.merge_patch(extra);
    WriteText(config_path, config.dump(2));
    process = std::make_unique<ServerProcess>(
        std::vector<std::string>{"server", "-config", config_path.string()},
        std::vector<std::string>{softhsm_env}, dir.path());
    REQUIRE(process->Start());
  }
};

TEST_SUITE("e2e/audit_query") {
  TEST_CASE("accessor filter follows the delegation chain") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    WritePolicy(*root, "worker", kWorkerPolicy);

    const Issued a = CreateToken(*root, {{"policies", {"worker"}}});
    auto a_client = MakeClient(server.port(), a.token);
    const Issued b = CreateToken(*a_client, {{"policies", {"worker"}}});
    auto b_client = MakeClient(server.port(), b.token);
    const Issued c = CreateToken(*root, {{"policies", {"worker"}}});
    auto c_client = MakeClient(server.port(), c.token);
    const std::string root_accessor = OwnAccessor(*root);

    REQUIRE(StatusOf(WriteSecret(*root, "by-root", {{"k", "v"}})) == 200);
    REQUIRE(StatusOf(WriteSecret(*a_client, "by-a", {{"k", "v"}})) == 200);
    REQUIRE(StatusOf(WriteSecret(*b_client, "by-b", {{"k", "v"}})) == 200);
    REQUIRE(StatusOf(WriteSecret(*c_client, "by-c", {{"k", "v"}})) == 200);

    const std::vector<json> under_a = AllRecords(*root, "accessor=" + a.accessor);
    std::set<std::string> accessors;
    std::set<std::string> paths;
    for (const json& record : under_a) {
      CAPTURE(record.dump());
      CHECK(ChainContains(record, a.accessor));
      accessors.insert(record["accessor"].get<std::string>());
      paths.insert(record["path"].get<std::string>());
    }
    CHECK(accessors == std::set<std::string>{a.accessor, b.accessor});
    CHECK(paths.count("secret/data/by-a") == 1);
    CHECK(paths.count("secret/data/by-b") == 1);
    CHECK(paths.count("secret/data/by-c") == 0);
    CHECK(paths.count("secret/data/by-root") == 0);

    // B has no children: only its own records.
    const std::vector<json> under_b = AllRecords(*root, "accessor=" + b.accessor);
    REQUIRE_FALSE(under_b.empty());
    for (const json& record : under_b) CHECK(record["accessor"] == b.accessor);

    // Every token descends from the root token.
    const std::vector<json> under_root = AllRecords(*root, "accessor=" + root_accessor);
    std::set<std::string> all_accessors;
    for (const json& record : under_root) all_accessors.insert(record["accessor"]);
    CHECK(all_accessors.count(c.accessor) == 1);
    CHECK(all_accessors.count(b.accessor) == 1);
  }

  TEST_CASE("status and path prefix filters") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    REQUIRE(StatusOf(server.AnonymousClient()->Get("/v1/secret/data/app")) == 403);
    REQUIRE(StatusOf(root->Get("/v1/secret/data/missing")) == 404);
    REQUIRE(StatusOf(WriteSecret(*root, "app", {{"k", "v"}})) == 200);
    REQUIRE(StatusOf(WriteSecret(*root, "apple", {{"k", "v"}})) == 200);

    const std::vector<json> forbidden = AllRecords(*root, "status=403");
    REQUIRE_FALSE(forbidden.empty());
    for (const json& record : forbidden) CHECK(record["status"] == 403);
    CHECK(std::any_of(forbidden.begin(), forbidden.end(),
                      [](const json& r) { return r["path"] == "secret/data/app"; }));

    const std::vector<json> client_errors = AllRecords(*root, "status=4xx");
    std::set<int> statuses;
    for (const json& record : client_errors) statuses.insert(record["status"].get<int>());
    CHECK(statuses == std::set<int>{403, 404});

    const std::vector<json> everything = AllRecords(*root, "");
    const std::vector<json> secrets = AllRecords(*root, "path_prefix=secret/");
    REQUIRE_FALSE(secrets.empty());
    CHECK(secrets.size() < everything.size());
    for (const json& record : secrets) {
      const std::string path = record["path"];
      CAPTURE(path);
      CHECK((path == "secret" || path.starts_with("secret/")));
    }

    // Whole segments: secret/data/app does not match secret/data/apple.
    const std::vector<json> app = AllRecords(*root, "path_prefix=secret/data/app");
    REQUIRE_FALSE(app.empty());
    for (const json& record : app) CHECK(record["path"] == "secret/data/app");
  }

  TEST_CASE("paging, order, time range and raw format") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    for (int i = 0; i < 12; ++i) {
      REQUIRE(StatusOf(WriteSecret(*root, "page/" + std::to_string(i), {{"i", i}})) == 200);
    }
    const std::vector<json> full = AllRecords(*root, "limit=1000");
    REQUIRE(full.size() >= 12);
    const std::vector<std::uint64_t> full_sequences = Sequences(full);
    for (std::size_t i = 0; i < full_sequences.size(); ++i) CHECK(full_sequences[i] == i + 1);

    // Each page request is itself recorded, so paging returns more records than `full`.
    int pages = 0;
    const std::vector<std::uint64_t> paged = Sequences(AllRecords(*root, "limit=5", &pages));
    REQUIRE(paged.size() >= full.size());
    for (std::size_t i = 0; i < paged.size(); ++i) CHECK(paged[i] == i + 1);
    CHECK(pages >= static_cast<int>(full.size() / 5));

    const std::vector<std::uint64_t> descending =
        Sequences(AllRecords(*root, "limit=4&order=desc"));
    REQUIRE(descending.size() >= full.size());
    CHECK(descending.back() == 1);
    for (std::size_t i = 1; i < descending.size(); ++i) {
      CHECK(descending[i] == descending[i - 1] - 1);
    }

    // Record times are fixed-width UTC, so string order is time order.
    const std::string from = full[3]["time"];
    const std::string to = full[9]["time"];
    std::vector<std::uint64_t> expected;
    for (const json& record : full) {
      const std::string time = record["time"];
      if (time >= from && time < to) expected.push_back(record["seq"]);
    }
    REQUIRE_FALSE(expected.empty());
    const std::vector<std::uint64_t> in_range =
        Sequences(AllRecords(*root, "from=" + from + "&to=" + to));
    CHECK(in_range == expected);
    const std::vector<std::uint64_t> in_range_descending =
        Sequences(AllRecords(*root, "order=desc&from=" + from + "&to=" + to));
    CHECK(std::vector<std::uint64_t>(in_range_descending.rbegin(), in_range_descending.rend()) ==
          expected);

    const json raw = QueryRecords(*root, "format=raw&limit=5");
    REQUIRE(raw["records"].size() == 5);
    Database db(server.db_path());
    for (std::size_t i = 0; i < 5; ++i) {
      CAPTURE(i);
      REQUIRE(raw["records"][i].is_string());
      const std::string line = raw["records"][i];
      CHECK(db.Get(AuditRecordKey(i + 1)) == line);
      CHECK(json::parse(line) == full[i]);
    }
    CHECK(raw["next"] == 5);
    CHECK(raw["scanned"] == 5);
  }

  TEST_CASE("queries need sudo") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    WritePolicy(*root, "reader", R"(
path "sys/audit/records" { capabilities = ["read"] }
path "sys/audit/checkpoints" { capabilities = ["read"] }
path "sys/audit/prune" { capabilities = ["update"] }
)");
    WritePolicy(*root, "auditor", R"(
path "sys/audit/records" { capabilities = ["read", "sudo"] }
path "sys/audit/checkpoints" { capabilities = ["read", "sudo"] }
)");
    auto reader = MakeClient(server.port(), CreateToken(*root, {{"policies", {"reader"}}}).token);
    auto auditor =
        MakeClient(server.port(), CreateToken(*root, {{"policies", {"auditor"}}}).token);

    CHECK(StatusOf(reader->Get("/v1/sys/audit/records")) == 403);
    CHECK(StatusOf(reader->Get("/v1/sys/audit/checkpoints")) == 403);
    CHECK(StatusOf(PostJson(*reader, "/v1/sys/audit/prune", {{"older_than", "1h"}})) == 403);
    CHECK(StatusOf(server.AnonymousClient()->Get("/v1/sys/audit/records")) == 403);
    CHECK(StatusOf(auditor->Get("/v1/sys/audit/records")) == 200);
    CHECK(StatusOf(auditor->Get("/v1/sys/audit/checkpoints")) == 200);
    CHECK(StatusOf(PostJson(*auditor, "/v1/sys/audit/prune", {{"older_than", "1h"}})) == 403);
  }

  TEST_CASE("bad parameters name the parameter") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    struct Case {
      std::string query;
      std::string parameter;
    };
    for (const Case& item : std::vector<Case>{
             {"limit=0", "limit"},
             {"limit=1001", "limit"},
             {"limit=ten", "limit"},
             {"after=-1", "after"},
             {"status=abc", "status"},
             {"status=600", "status"},
             {"status=4x", "status"},
             {"from=yesterday", "from"},
             {"to=2026-13-01T00:00:00Z", "to"},
             {"from=2026-05-02T00:00:00Z&to=2026-05-01T00:00:00Z", "to"},
             {"order=up", "order"},
             {"format=xml", "format"},
             {"path_prefix=/", "path_prefix"},
             {"accessor=", "accessor"},
             {"acessor=x", "acessor"},
         }) {
      CAPTURE(item.query);
      auto result = root->Get("/v1/sys/audit/records?" + item.query);
      CHECK(StatusOf(result) == 400);
      CHECK(ErrorsOf(result).find("\\\"" + item.parameter + "\\\"") != std::string::npos);
    }
    auto checkpoints = root->Get("/v1/sys/audit/checkpoints?limit=0");
    CHECK(StatusOf(checkpoints) == 400);
    CHECK(ErrorsOf(checkpoints).find("limit") != std::string::npos);
    CHECK(StatusOf(PostJson(*root, "/v1/sys/audit/records", json::object())) == 405);
  }

  TEST_CASE("checkpoints are listed by size") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    std::vector<json> signed_checkpoints;
    for (int round = 0; round < 3; ++round) {
      REQUIRE(StatusOf(WriteSecret(*root, "cp/" + std::to_string(round), {{"k", round}})) == 200);
      auto signed_now = root->Post("/v1/sys/audit/checkpoint", "", "application/json");
      REQUIRE_MESSAGE(StatusOf(signed_now) == 200, ErrorsOf(signed_now));
      signed_checkpoints.push_back(BodyOf(signed_now)["data"]);
    }

    auto listed = root->Get("/v1/sys/audit/checkpoints");
    REQUIRE_MESSAGE(StatusOf(listed) == 200, ErrorsOf(listed));
    const json all = BodyOf(listed)["data"];
    REQUIRE(all["checkpoints"].size() >= signed_checkpoints.size());
    CHECK(all["next"].is_null());
    std::vector<std::uint64_t> sizes;
    for (const json& entry : all["checkpoints"]) sizes.push_back(entry["size"]);
    CHECK(std::is_sorted(sizes.begin(), sizes.end()));
    for (const json& expected : signed_checkpoints) {
      CAPTURE(expected.dump());
      const auto found = std::find_if(
          all["checkpoints"].begin(), all["checkpoints"].end(),
          [&](const json& entry) { return entry["size"] == expected["size"]; });
      REQUIRE(found != all["checkpoints"].end());
      CHECK((*found)["note"] == expected["checkpoint"]);
    }

    // One per page, continuing with next.
    std::vector<std::uint64_t> paged;
    std::string after;
    for (int page = 0; page < 100; ++page) {
      auto result = root->Get("/v1/sys/audit/checkpoints?limit=1" + after);
      REQUIRE(StatusOf(result) == 200);
      const json data = BodyOf(result)["data"];
      REQUIRE(data["checkpoints"].size() <= 1);
      for (const json& entry : data["checkpoints"]) paged.push_back(entry["size"]);
      if (data["next"].is_null()) break;
      after = "&after=" + std::to_string(data["next"].get<std::uint64_t>());
    }
    CHECK(paged == sizes);
  }

  TEST_CASE("prune needs age and archive_dir") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    auto no_age = PostJson(*root, "/v1/sys/audit/prune", json::object());
    CHECK(StatusOf(no_age) == 400);
    CHECK(ErrorsOf(no_age).find("older_than") != std::string::npos);
    auto bad_age = PostJson(*root, "/v1/sys/audit/prune", {{"older_than", "soon"}});
    CHECK(StatusOf(bad_age) == 400);
    CHECK(ErrorsOf(bad_age).find("older_than") != std::string::npos);
    auto no_dir = PostJson(*root, "/v1/sys/audit/prune", {{"older_than", "1h"}});
    CHECK(StatusOf(no_dir) == 400);
    CHECK(ErrorsOf(no_dir).find("archive_dir") != std::string::npos);
  }

  TEST_CASE("prune archives and queries resume") {
    ConfigServer server;
    const fs::path archive_dir = server.dir.path() / "archive";
    server.Start({{"audit", {{"retention", "24h"}, {"archive_dir", archive_dir.string()}}}});
    auto anonymous = MakeClient(server.process->port(), "");
    auto init = anonymous->Put("/v1/sys/init", "{}", "application/json");
    REQUIRE(StatusOf(init) == 200);
    auto root = MakeClient(server.process->port(), BodyOf(init)["root_token"].get<std::string>());
    for (int i = 0; i < 5; ++i) {
      REQUIRE(StatusOf(WriteSecret(*root, "old/" + std::to_string(i), {{"i", i}})) == 200);
    }
    const json before = QueryRecords(*root, "format=raw&limit=1000");
    const std::size_t stored = before["records"].size();
    REQUIRE(stored >= 6);

    // The configured retention (24h) keeps everything.
    auto nothing_pruned = PostJson(*root, "/v1/sys/audit/prune", json::object());
    REQUIRE_MESSAGE(StatusOf(nothing_pruned) == 200, ErrorsOf(nothing_pruned));
    CHECK(BodyOf(nothing_pruned)["data"]["pruned"] == 0);
    CHECK(BodyOf(nothing_pruned)["data"]["archive"].is_null());

    std::this_thread::sleep_for(std::chrono::milliseconds(2100));
    auto pruned = PostJson(*root, "/v1/sys/audit/prune", {{"older_than", "1s"}});
    REQUIRE_MESSAGE(StatusOf(pruned) == 200, ErrorsOf(pruned));
    const json report = BodyOf(pruned)["data"];
    CAPTURE(report.dump());
    CHECK(report["first_seq"] == 1);
    // Every record but the newest, which the prune itself commits before deleting anything:
    // the records listed above, the listing request's own and the first prune request's.
    REQUIRE(report["last_seq"] == stored + 2);
    CHECK(report["pruned"] == stored + 2);

    const std::string archive = report["archive"];
    CHECK(fs::path(archive).parent_path() == archive_dir);
    std::ifstream file(archive);
    std::vector<std::string> lines;
    for (std::string line; std::getline(file, line);) {
      // The server may have signed a checkpoint meanwhile; its line follows its record.
      if (!line.starts_with("{\"checkpoint\":")) lines.push_back(line);
    }
    REQUIRE(lines.size() == stored + 2);
    for (std::size_t i = 0; i < stored; ++i) {
      CAPTURE(i);
      CHECK(lines[i] == before["records"][i]);
    }
    CHECK((fs::status(archive_dir).permissions() & fs::perms::all) == fs::perms::owner_all);

    const std::vector<json> remaining = AllRecords(*root, "");
    REQUIRE_FALSE(remaining.empty());
    CHECK(remaining.front()["seq"] == stored + 3);
    CHECK(remaining.front()["path"] == "sys/audit/prune");
    CHECK(remaining.front()["method"] == "PRUNE");
    auto verify = root->Get("/v1/sys/audit/verify");
    CHECK_MESSAGE(StatusOf(verify) == 200, BodyOf(verify).dump());
    CHECK(BodyOf(verify)["data"]["ok"] == true);
  }

  TEST_CASE("client SPIFFE ID is recorded and found") {
    const std::time_t now = std::time(nullptr);
    ConfigServer server;
    const testing::TestCert server_ca = testing::IssueCa("e2e server CA", now - 3600, now + 86400);
    testing::CertSpec server_spec;
    server_spec.common_name = "127.0.0.1";
    server_spec.subject_alt_name = "IP:127.0.0.1";
    server_spec.extended_key_usage = "serverAuth";
    server_spec.not_before = now - 60;
    server_spec.not_after = now + 3600;
    const testing::TestCert server_cert = testing::IssueCert(server_spec, &server_ca);
    const testing::TestCert client_ca = testing::IssueCa("e2e client CA", now - 3600, now + 86400);
    const testing::TestCert client = testing::IssueCert(
        testing::LeafSpec("spiffe://example.org/ns/query", "workload", now - 60, now + 3600),
        &client_ca);
    const fs::path dir = server.dir.path();
    WriteTextFile(dir / "server.pem", server_cert.Pem());
    WriteTextFile(dir / "server-key.pem", server_cert.KeyPem());
    WriteTextFile(dir / "server-ca.pem", server_ca.Pem());
    WriteTextFile(dir / "client-ca.pem", client_ca.Pem());
    WriteTextFile(dir / "client.pem", client.Pem());
    WriteTextFile(dir / "client-key.pem", client.KeyPem());
    server.Start({{"listener",
                   {{"tls_cert_file", (dir / "server.pem").string()},
                    {"tls_key_file", (dir / "server-key.pem").string()},
                    {"tls_client_ca_file", (dir / "client-ca.pem").string()}}}});
    const std::string url = "https://127.0.0.1:" + std::to_string(server.process->port());
    const std::vector<std::string> tls = {"--cacert", (dir / "server-ca.pem").string()};
    const auto curl = [&](std::vector<std::string> args) {
      args.insert(args.begin(), tls.begin(), tls.end());
      return Curl(args);
    };

    const CurlResult init = curl({"-X", "PUT", "--data", "{}", url + "/v1/sys/init"});
    REQUIRE_MESSAGE(init.status == 200, init.err << init.body.dump());
    const std::string token_header = "X-Vault-Token: " + init.body["root_token"].get<std::string>();
    const CurlResult with_cert =
        curl({"--cert", (dir / "client.pem").string(), "--key", (dir / "client-key.pem").string(),
              "-H", token_header, "-X", "POST", "--data", R"({"data":{"k":"v"}})",
              url + "/v1/secret/data/from-workload"});
    REQUIRE_MESSAGE(with_cert.status == 200, with_cert.err << with_cert.body.dump());
    const CurlResult without_cert = curl({"-H", token_header, "-X", "POST", "--data",
                                          R"({"data":{"k":"v"}})",
                                          url + "/v1/secret/data/no-certificate"});
    REQUIRE(without_cert.status == 200);

    const std::string records_url = url + "/v1/sys/audit/records?spiffe_id=";
    const CurlResult found =
        curl({"-H", token_header, records_url + "spiffe://example.org/ns/query"});
    REQUIRE_MESSAGE(found.status == 200, found.body.dump());
    const json records = found.body["data"]["records"];
    REQUIRE(records.size() == 1);
    CHECK(records[0]["client_spiffe_id"] == "spiffe://example.org/ns/query");
    CHECK(records[0]["path"] == "secret/data/from-workload");

    const CurlResult other =
        curl({"-H", token_header, records_url + "spiffe://example.org/ns/other"});
    REQUIRE(other.status == 200);
    CHECK(other.body["data"]["records"].empty());
  }
}

}  // namespace
}  // namespace kw::e2e
