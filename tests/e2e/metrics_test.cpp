// sys/metrics through the real binary: known requests, then the Prometheus text parsed by the
// prometheus_client library's parser (Debian's python3-prometheus-client, which loads only in
// /usr/bin/python3), and the Vault-shaped JSON.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/postgres_harness.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

using Labels = std::map<std::string, std::string>;

// Parses the file named by argv[1] with prometheus_client's text parser and prints every
// family as JSON: name (counters without _total, as the parser reports them), type, help and
// samples. Values that are not finite become strings, since JSON has no Inf or NaN.
constexpr const char* kParser = R"(
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
with open(sys.argv[1], encoding="utf-8") as source:
    text = source.read()
families = []
for family in text_string_to_metric_families(text):
    samples = []
    for sample in family.samples:
        value = sample.value
        samples.append({"name": sample.name, "labels": sample.labels,
                        "value": value if math.isfinite(value) else str(value)})
    families.append({"name": family.name, "type": family.type,
                     "help": family.documentation, "samples": samples})
json.dump(families, sys.stdout)
)";

struct Sample {
  std::string name;
  Labels labels;
  double value = 0;
};

struct Family {
  std::string type;
  std::string help;
  std::vector<Sample> samples;
};

using Families = std::map<std::string, Family>;

// The route families and HSM operations that the server may use as label values.
const std::set<std::string> kRouteFamilies = {"kv",   "sys",    "auth_token", "auth_approle",
                                              "auth_cert", "database", "pki", "leases",
                                              "audit", "policy", "other"};
const std::set<std::string> kCodes = {"200", "204", "400", "403", "404", "405", "409", "412",
                                      "413", "429", "500", "503", "2xx", "3xx", "4xx", "5xx"};
const std::set<std::string> kCodeClasses = {"2xx", "3xx", "4xx", "5xx"};
const std::set<std::string> kHsmOperations = {
    "aes_gcm_encrypt",      "aes_gcm_decrypt",         "sha256_hmac",
    "ecdsa_sign",           "eddsa_sign",              "find_key",
    "find_private_key",     "list_keys",               "generate_aes_key",
    "generate_hmac_key",    "generate_ec_key_pair",    "generate_ed25519_key_pair",
    "read_ec_public_key",   "read_ed25519_public_key", "read_key_attributes"};

// Every family a scrape must list, by the name the parser gives it, with its type.
const std::map<std::string, std::string> kExpectedFamilies = {
    {"keyward_unsealed", "gauge"},
    {"keyward_start_time_seconds", "gauge"},
    {"keyward_uptime_seconds", "gauge"},
    {"keyward_storage_queued_batches", "gauge"},
    {"keyward_storage_writes_disabled", "gauge"},
    {"keyward_leases_active", "gauge"},
    {"keyward_leases_revoking", "gauge"},
    {"keyward_lease_prefix_jobs", "gauge"},
    {"keyward_lease_revocations", "counter"},
    {"keyward_lease_revocation_failures", "counter"},
    {"keyward_lease_expirations", "counter"},
    {"keyward_leases", "gauge"},
    {"keyward_tokens", "gauge"},
    {"keyward_rate_limit_address_rejections", "counter"},
    {"keyward_rate_limit_accessor_rejections", "counter"},
    {"keyward_rate_limit_login_rejections", "counter"},
    {"keyward_approle_lockouts", "counter"},
    {"keyward_approle_lockout_rejections", "counter"},
    {"keyward_http_requests", "counter"},
    {"keyward_http_request_duration_seconds", "histogram"},
    {"keyward_hsm_operations", "counter"},
    {"keyward_hsm_operation_errors", "counter"},
    {"keyward_hsm_operation_duration_seconds", "histogram"},
    {"keyward_storage_commit_duration_seconds", "histogram"},
    {"keyward_storage_transaction_duration_seconds", "histogram"},
    {"keyward_storage_transaction_batches", "histogram"},
    {"keyward_storage_batches_rejected", "counter"},
    {"keyward_audit_append_duration_seconds", "histogram"},
    {"keyward_audit_append_failures", "counter"},
};

std::string ScrapeText(httplib::Client& client) {
  auto scraped = client.Get("/v1/sys/metrics?format=prometheus");
  REQUIRE(StatusOf(scraped) == 200);
  CHECK(scraped->get_header_value("Content-Type").starts_with("text/plain; version=0.0.4"));
  return scraped->body;
}

Families Parse(const std::string& text) {
  TempDir dir;
  const auto path = dir.path() / "metrics.txt";
  WriteTextFile(path, text);
  const ExitResult run = RunProgram("/usr/bin/python3", {"-c", kParser, path.string()}, {});
  REQUIRE_MESSAGE(run.exit_code == 0, "the Prometheus parser rejected the scrape: " << run.err);
  Families families;
  for (const json& family : json::parse(run.out)) {
    Family parsed{family["type"].get<std::string>(), family["help"].get<std::string>(), {}};
    for (const json& sample : family["samples"]) {
      Sample item{sample["name"].get<std::string>(), sample["labels"].get<Labels>(), 0};
      item.value = sample["value"].is_number()
                       ? sample["value"].get<double>()
                       : std::numeric_limits<double>::quiet_NaN();
      parsed.samples.push_back(std::move(item));
    }
    families[family["name"].get<std::string>()] = std::move(parsed);
  }
  return families;
}

// Returns the value of sample `name` with exactly `labels`; nullopt when there is none.
std::optional<double> Find(const Families& families, const std::string& family,
                           const std::string& name, const Labels& labels = {}) {
  const auto found = families.find(family);
  if (found == families.end()) return std::nullopt;
  for (const Sample& sample : found->second.samples) {
    if (sample.name == name && sample.labels == labels) return sample.value;
  }
  return std::nullopt;
}

// Returns the value like Find, or 0 for a series that is not listed yet (families that hide
// series until their first observation).
double ValueOrZero(const Families& families, const std::string& family, const std::string& name,
                   const Labels& labels = {}) {
  return Find(families, family, name, labels).value_or(0);
}

double Le(const std::string& text) {
  return text == "+Inf" ? std::numeric_limits<double>::infinity() : std::stod(text);
}

// Checks every series of every histogram: `le` ascending and ending in +Inf, buckets
// cumulative, the +Inf bucket equal to _count, and a _sum.
void CheckHistograms(const Families& families) {
  // Named references, not structured bindings: clang 14 cannot capture those in doctest's
  // assertion macros.
  for (const auto& entry : families) {
    const std::string& name = entry.first;
    const auto& family = entry.second;
    if (family.type != "histogram") continue;
    std::map<Labels, std::vector<std::pair<double, double>>> buckets;
    std::map<Labels, double> counts;
    std::map<Labels, double> sums;
    for (const Sample& sample : family.samples) {
      if (sample.name == name + "_bucket") {
        Labels series = sample.labels;
        REQUIRE_MESSAGE(series.count("le") == 1, name << " bucket without le");
        const double le = Le(series["le"]);
        series.erase("le");
        buckets[series].emplace_back(le, sample.value);
      } else if (sample.name == name + "_count") {
        counts[sample.labels] = sample.value;
      } else if (sample.name == name + "_sum") {
        sums[sample.labels] = sample.value;
      }
    }
    for (const auto& bucket : buckets) {
      const Labels& series = bucket.first;
      const auto& list = bucket.second;
      INFO(name << " series " << json(series).dump());
      REQUIRE(!list.empty());
      for (std::size_t i = 1; i < list.size(); ++i) {
        CHECK(list[i - 1].first < list[i].first);
        CHECK(list[i - 1].second <= list[i].second);
      }
      CHECK(std::isinf(list.back().first));
      REQUIRE(counts.count(series) == 1);
      CHECK(list.back().second == counts[series]);
      REQUIRE(sums.count(series) == 1);
      CHECK(sums[series] >= 0);
    }
    CHECK(counts.size() == buckets.size());
  }
}

// Checks that every family has HELP text and the expected type, and that no label value of
// any sample contains one of `forbidden` (secrets, tokens, paths a client chose).
void CheckFamilies(const Families& families, const std::vector<std::string>& forbidden) {
  for (const auto& expected : kExpectedFamilies) {
    const auto& name = expected.first;
    const auto& type = expected.second;
    INFO("family " << name);
    const auto found = families.find(name);
    REQUIRE(found != families.end());
    CHECK(found->second.type == type);
    CHECK_FALSE(found->second.help.empty());
  }
  for (const auto& entry : families) {
    const std::string& name = entry.first;
    const auto& family = entry.second;
    CHECK_MESSAGE(name.starts_with("keyward_"), name);
    for (const Sample& sample : family.samples) {
      for (const auto& pair : sample.labels) {
        const std::string& label = pair.first;
        const std::string& value = pair.second;
        for (const std::string& secret : forbidden) {
          CHECK_MESSAGE(value.find(secret) == std::string::npos,
                        sample.name << " label " << label << " contains a client value");
        }
      }
    }
  }
}

void CheckLabelSets(const Families& families) {
  for (const Sample& sample : families.at("keyward_http_requests").samples) {
    REQUIRE(sample.labels.size() == 2);
    CHECK(kRouteFamilies.count(sample.labels.at("family")) == 1);
    CHECK(kCodes.count(sample.labels.at("code")) == 1);
  }
  for (const Sample& sample : families.at("keyward_http_request_duration_seconds").samples) {
    CHECK(kRouteFamilies.count(sample.labels.at("family")) == 1);
    CHECK(kCodeClasses.count(sample.labels.at("code_class")) == 1);
  }
  for (const std::string family : {"keyward_hsm_operations", "keyward_hsm_operation_errors",
                                   "keyward_hsm_operation_duration_seconds"}) {
    for (const Sample& sample : families.at(family).samples) {
      CHECK(kHsmOperations.count(sample.labels.at("operation")) == 1);
    }
  }
  for (const std::string family : {"keyward_leases", "keyward_tokens"}) {
    for (const Sample& sample : families.at(family).samples) {
      std::set<std::string> names;
      for (const auto& [name, value] : sample.labels) names.insert(name);
      CHECK(names == std::set<std::string>{"mount", "role"});
    }
  }
}

std::string CreateAppRoleToken(httplib::Client& root, const std::string& role) {
  REQUIRE(StatusOf(PostJson(root, "/v1/auth/approle/role/" + role, json::object())) == 204);
  auto role_id = root.Get(("/v1/auth/approle/role/" + role + "/role-id").c_str());
  REQUIRE(StatusOf(role_id) == 200);
  auto secret_id = PostJson(root, "/v1/auth/approle/role/" + role + "/secret-id", json::object());
  REQUIRE(StatusOf(secret_id) == 200);
  auto login = PostJson(root, "/v1/auth/approle/login",
                        {{"role_id", BodyOf(role_id)["data"]["role_id"]},
                         {"secret_id", BodyOf(secret_id)["data"]["secret_id"]}});
  REQUIRE(StatusOf(login) == 200);
  return BodyOf(login)["auth"]["client_token"].get<std::string>();
}

const Labels kKvOk = {{"family", "kv"}, {"code", "200"}};
const Labels kKvNotFound = {{"family", "kv"}, {"code", "404"}};
const Labels kOtherNotFound = {{"family", "other"}, {"code", "404"}};
const Labels kKvOkClass = {{"family", "kv"}, {"code_class", "2xx"}};
const Labels kDecrypt = {{"operation", "aes_gcm_decrypt"}};
const Labels kEncrypt = {{"operation", "aes_gcm_encrypt"}};

}  // namespace

TEST_SUITE("e2e/metrics") {
  TEST_CASE("prometheus scrape counts known requests") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    const Families before = Parse(ScrapeText(*root));

    // The requests whose effect the second scrape must show, 15 in all.
    const std::string secret_value = "metrics-secret-" + RandomHex(8);
    REQUIRE(StatusOf(WriteSecret(*root, "metrics/app", {{"value", secret_value}})) == 200);
    REQUIRE(StatusOf(WriteSecret(*root, "metrics/app", {{"value", secret_value}})) == 200);
    constexpr int kReads = 5;
    for (int i = 0; i < kReads; ++i) {
      REQUIRE(ReadSecretData(*root, "metrics/app") == json{{"value", secret_value}});
    }
    REQUIRE(StatusOf(root->Get("/v1/secret/data/metrics/missing")) == 404);
    REQUIRE(StatusOf(root->Get("/v1/metrics-no-such-route")) == 404);
    REQUIRE(StatusOf(PostJson(*root, "/v1/auth/token/roles/ci", json::object())) == 204);
    auto created = PostJson(*root, "/v1/auth/token/create/ci", {{"policies", {"default"}}});
    REQUIRE(StatusOf(created) == 200);
    const std::string child_token = BodyOf(created)["auth"]["client_token"].get<std::string>();
    const std::string child_accessor = BodyOf(created)["auth"]["accessor"].get<std::string>();
    const std::string approle_token = CreateAppRoleToken(*root, "web");
    constexpr int kRequests = 15;

    const std::string text = ScrapeText(*root);
    const Families after = Parse(text);
    CheckFamilies(after, {secret_value, child_token, child_accessor, approle_token,
                          server.token(), "metrics/app", "metrics-no-such-route"});
    CheckLabelSets(after);
    CheckHistograms(after);
    CHECK(text.find(secret_value) == std::string::npos);
    CHECK(text.find(server.token()) == std::string::npos);
    CHECK(text.find(child_token) == std::string::npos);

    const std::string requests = "keyward_http_requests_total";
    CHECK(ValueOrZero(after, "keyward_http_requests", requests, kKvOk) -
              ValueOrZero(before, "keyward_http_requests", requests, kKvOk) ==
          2 + kReads);
    CHECK(ValueOrZero(after, "keyward_http_requests", requests, kKvNotFound) -
              ValueOrZero(before, "keyward_http_requests", requests, kKvNotFound) ==
          1);
    CHECK(ValueOrZero(after, "keyward_http_requests", requests, kOtherNotFound) -
              ValueOrZero(before, "keyward_http_requests", requests, kOtherNotFound) ==
          1);
    const std::string duration = "keyward_http_request_duration_seconds";
    CHECK(ValueOrZero(after, duration, duration + "_count", kKvOkClass) -
              ValueOrZero(before, duration, duration + "_count", kKvOkClass) ==
          2 + kReads);
    // The first scrape is counted once its response is ready, so the second one lists it.
    CHECK(ValueOrZero(after, "keyward_http_requests", requests,
                      {{"family", "sys"}, {"code", "200"}}) >= 1);

    // Each read decrypts at least the secret's version, each write encrypts it.
    const std::string operations = "keyward_hsm_operations_total";
    CHECK(ValueOrZero(after, "keyward_hsm_operations", operations, kDecrypt) -
              ValueOrZero(before, "keyward_hsm_operations", operations, kDecrypt) >=
          kReads);
    CHECK(ValueOrZero(after, "keyward_hsm_operations", operations, kEncrypt) -
              ValueOrZero(before, "keyward_hsm_operations", operations, kEncrypt) >=
          2);
    CHECK(Find(after, "keyward_hsm_operation_errors", "keyward_hsm_operation_errors_total",
               kDecrypt) == 0);
    const std::string hsm_duration = "keyward_hsm_operation_duration_seconds";
    CHECK(ValueOrZero(after, hsm_duration, hsm_duration + "_count", kDecrypt) ==
          ValueOrZero(after, "keyward_hsm_operations", operations, kDecrypt));

    // Every request commits its audit record: one commit and one append each, at least.
    const std::string commit = "keyward_storage_commit_duration_seconds";
    CHECK(ValueOrZero(after, commit, commit + "_count") -
              ValueOrZero(before, commit, commit + "_count") >=
          kRequests);
    const std::string append = "keyward_audit_append_duration_seconds";
    CHECK(ValueOrZero(after, append, append + "_count") -
              ValueOrZero(before, append, append + "_count") >=
          kRequests);
    const std::string batches = "keyward_storage_transaction_batches";
    const double transactions = ValueOrZero(after, batches, batches + "_count") -
                                ValueOrZero(before, batches, batches + "_count");
    CHECK(transactions >= 1);
    CHECK(transactions <= ValueOrZero(after, commit, commit + "_count") -
                              ValueOrZero(before, commit, commit + "_count"));
    CHECK(Find(after, "keyward_audit_append_failures", "keyward_audit_append_failures_total",
               {{"stage", "append"}}) == 0);

    const std::string tokens = "keyward_tokens";
    CHECK(Find(after, tokens, tokens, {{"mount", "token"}, {"role", ""}}) == 1);  // root
    CHECK(Find(after, tokens, tokens, {{"mount", "token"}, {"role", "ci"}}) == 1);
    CHECK(Find(after, tokens, tokens, {{"mount", "approle"}, {"role", "web"}}) == 1);
    CHECK(Find(after, "keyward_unsealed", "keyward_unsealed") == 1);
    CHECK(Find(after, "keyward_storage_writes_disabled", "keyward_storage_writes_disabled") == 0);
    CHECK(Find(after, "keyward_start_time_seconds", "keyward_start_time_seconds") > 1.6e9);
    CHECK(Find(after, "keyward_uptime_seconds", "keyward_uptime_seconds") >= 0);

    // Revoking the token lowers its role's count when the revocation commits.
    REQUIRE(StatusOf(PostJson(*root, "/v1/auth/token/revoke-accessor",
                              {{"accessor", child_accessor}})) == 204);
    const Families revoked = Parse(ScrapeText(*root));
    CHECK(Find(revoked, tokens, tokens, {{"mount", "token"}, {"role", "ci"}}) == 0);
    CHECK(Find(revoked, tokens, tokens, {{"mount", "approle"}, {"role", "web"}}) == 1);
  }

  TEST_CASE("json form matches the prometheus form") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    REQUIRE(StatusOf(WriteSecret(*root, "metrics/json", {{"value", "v"}})) == 200);
    for (int i = 0; i < 3; ++i) {
      REQUIRE(ReadSecretData(*root, "metrics/json") == json{{"value", "v"}});
    }

    // No KV request runs between the two scrapes, so their KV figures agree.
    const Families families = Parse(ScrapeText(*root));
    auto scraped = root->Get("/v1/sys/metrics");
    REQUIRE(StatusOf(scraped) == 200);
    const json body = BodyOf(scraped);
    for (const char* key : {"Timestamp", "Gauges", "Counters", "Points", "Samples"}) {
      CHECK_MESSAGE(body.contains(key), key);
    }

    const auto find = [&](const char* section, const std::string& name, const json& labels) {
      for (const json& item : body[section]) {
        if (item["Name"] == name && item["Labels"] == labels) return item;
      }
      return json();
    };
    const json kv_ok = find("Counters", "keyward.http.requests.total",
                            {{"family", "kv"}, {"code", "200"}});
    REQUIRE(kv_ok.is_object());
    CHECK(kv_ok["Count"] == 4);
    CHECK(kv_ok["Count"].get<double>() ==
          Find(families, "keyward_http_requests", "keyward_http_requests_total", kKvOk));

    const json latency = find("Samples", "keyward.http.request.duration.seconds",
                              {{"family", "kv"}, {"code_class", "2xx"}});
    REQUIRE(latency.is_object());
    CHECK(latency["Count"] == 4);
    const std::string duration = "keyward_http_request_duration_seconds";
    const std::optional<double> sum = Find(families, duration, duration + "_sum", kKvOkClass);
    REQUIRE(sum.has_value());
    CHECK(latency["Sum"].get<double>() == doctest::Approx(*sum));
    CHECK(latency["Min"].get<double>() > 0);
    CHECK(latency["Min"].get<double>() <= latency["Mean"].get<double>());
    CHECK(latency["Mean"].get<double>() <= latency["Max"].get<double>());
    for (const char* key : {"Rate", "Stddev"}) CHECK_MESSAGE(latency.contains(key), key);

    const json decrypt = find("Samples", "keyward.hsm.operation.duration.seconds",
                              {{"operation", "aes_gcm_decrypt"}});
    REQUIRE(decrypt.is_object());
    CHECK(decrypt["Count"].get<double>() >= 3);

    const json unsealed = find("Gauges", "keyward.unsealed", json::object());
    REQUIRE(unsealed.is_object());
    CHECK(unsealed["Value"] == 1);
  }

  TEST_CASE("metrics requests are checked like any other") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    CHECK(StatusOf(root->Get("/v1/sys/metrics?format=statsd")) == 400);
    CHECK(StatusOf(server.AnonymousClient()->Get("/v1/sys/metrics")) == 403);
    CHECK(StatusOf(PostJson(*root, "/v1/sys/metrics", json::object())) == 405);
  }

  TEST_CASE("database leases are counted by role") {
    auto pg = RequireSharedPostgres();
    if (!pg) return;
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    REQUIRE(StatusOf(PostJson(*root, "/v1/database/config/pg", pg->ConfigBody())) == 204);
    REQUIRE(StatusOf(PostJson(
                *root, "/v1/database/roles/metrics",
                {{"db_name", "pg"},
                 {"creation_statements",
                  "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
                  "VALID UNTIL '{{expiration}}'"},
                 {"default_ttl", "1h"}})) == 204);
    const Families before = Parse(ScrapeText(*root));

    auto creds = root->Get("/v1/database/creds/metrics");
    REQUIRE(StatusOf(creds) == 200);
    const std::string lease_id = BodyOf(creds)["lease_id"].get<std::string>();
    const std::string password = BodyOf(creds)["data"]["password"].get<std::string>();
    const std::string text = ScrapeText(*root);
    const Families issued = Parse(text);
    CHECK(text.find(password) == std::string::npos);
    CHECK(text.find(lease_id) == std::string::npos);
    const Labels role = {{"mount", "database"}, {"role", "metrics"}};
    CHECK(Find(issued, "keyward_leases", "keyward_leases", role) == 1);
    CHECK(Find(issued, "keyward_leases_active", "keyward_leases_active") == 1);
    const Labels database_ok = {{"family", "database"}, {"code", "200"}};
    CHECK(ValueOrZero(issued, "keyward_http_requests", "keyward_http_requests_total",
                      database_ok) -
              ValueOrZero(before, "keyward_http_requests", "keyward_http_requests_total",
                          database_ok) ==
          1);

    REQUIRE(StatusOf(PostJson(*root, "/v1/sys/leases/revoke", {{"lease_id", lease_id}})) == 204);
    const Families revoked = Parse(ScrapeText(*root));
    CHECK(Find(revoked, "keyward_leases", "keyward_leases", role) == 0);
    CHECK(Find(revoked, "keyward_lease_revocations", "keyward_lease_revocations_total") >= 1);
    const Labels leases_ok = {{"family", "leases"}, {"code", "204"}};
    CHECK(Find(revoked, "keyward_http_requests", "keyward_http_requests_total", leases_ok) == 1);
  }
}

}  // namespace kw::e2e
