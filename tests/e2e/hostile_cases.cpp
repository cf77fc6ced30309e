// The hostile request table, one function per route family. To cover a new route, add rows to
// its family's function (or a new function listed in HostileCases): a request that must be
// rejected, the status and a substring of the error. hostile_test.cpp fails for every route
// prefix in api/router.cpp and the sys handlers that no row targets.
#include "tests/e2e/hostile_cases.hpp"

#include <string>
#include <utility>

namespace kw::e2e {
namespace {

using Cases = std::vector<HostileCase>;

const std::string kJson = "Content-Type: application/json\r\n";
const std::string kPlanted(kPlantedValue);

// 2^64 + 1 and 2^63: past uint64 (nlohmann reads it as a double) and past int64.
const std::string kPast64 = "18446744073709551617";
const std::string kPast63 = "9223372036854775808";

// A JSON string value holding `json` (for fields that take a JSON document as a string).
std::string Quoted(const std::string& json) {
  std::string out = "\"";
  for (char c : json) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out + "\"";
}

// A body that is valid JSON except that one value is `value`, for typed-field rows.
std::string Field(const std::string& name, const std::string& value) {
  return "{\"" + name + "\":" + value + "}";
}

// Rows that go through the ordinary request path: method, target, JSON body.
HostileCase Row(std::string family, std::string method, std::string target, std::string body,
                int status, std::string error) {
  HostileCase row;
  row.family = std::move(family);
  row.method = std::move(method);
  row.target = std::move(target);
  row.body = std::move(body);
  if (!row.body.empty()) row.headers = kJson;
  row.status = status;
  row.error = std::move(error);
  return row;
}

HostileCase Anonymous(HostileCase row) {
  row.authenticate = false;
  return row;
}

HostileCase WithHeaders(HostileCase row, const std::string& headers) {
  row.headers += headers;
  return row;
}

HostileCase MergePatch(HostileCase row) {
  row.headers = "Content-Type: application/merge-patch+json\r\n";
  return row;
}

HostileCase Raw(std::string family, std::string raw, int status, std::string error) {
  HostileCase row;
  row.family = std::move(family);
  row.raw = std::move(raw);
  row.status = status;
  row.error = std::move(error);
  return row;
}

// KV v2 paths: traversal, encodings and malformed bodies on data, metadata, delete, undelete,
// destroy and config.
Cases KvPathCases() {
  return {
      Row("secret", "GET", "/v1/secret/data/a/../known", "", 400, "\\\"..\\\" segments"),
      Row("secret", "GET", "/v1/secret/data/a/%2e%2e/known", "", 400, "\\\"..\\\" segments"),
      Row("secret", "GET", "/v1/secret/data/a/%2E%2e", "", 400, "\\\"..\\\" segments"),
      Row("secret", "GET", "/v1/secret/data/a/%c0%ae%c0%ae/known", "", 400, "not valid UTF-8"),
      Row("secret", "GET", "/v1/secret/data/a/%e0%80%ae/known", "", 400, "not valid UTF-8"),
      Row("secret", "GET", "/v1/secret/data/a//known", "", 400, "doubled slash"),
      Row("secret", "GET", "/v1//secret/data/known", "", 400, "doubled slash"),
      Row("secret", "GET", "/v1/secret/data/known//", "", 400, "doubled slash"),
      Row("secret", "GET", "/v1/secret/data/a%2fknown", "", 400, "encoded slashes"),
      Row("secret", "GET", "/v1/secret/data/a%2Fb/..%2f..%2fknown", "", 400, "encoded slashes"),
      Row("secret", "GET", "/v1/secret/data/a%5c..%5cknown", "", 400, "backslashes"),
      Row("secret", "GET", "/v1/secret/data/a\\..\\known", "", 400, "backslashes"),
      // Decoded once only: "%2e%2e" is an ordinary secret name, which does not exist.
      Row("secret", "GET", "/v1/secret/data/a/%252e%252e/known", "", 404, "errors"),
      Row("secret", "GET", "/v1/secret/data/a%00b", "", 400, "NUL bytes"),
      Row("secret", "GET", "/v1/secret/data/a%ffb", "", 400, "not valid UTF-8"),
      Row("secret", "GET", "/v1/secret/data/a%c3%28", "", 400, "not valid UTF-8"),
      Row("secret", "GET", "/v1/secret/data/a%ed%a0%80", "", 400, "not valid UTF-8"),
      Row("secret", "GET", "/v1/secret/data/a%01b", "", 400, "control characters"),
      Row("secret", "GET", "/v1/secret/data/a%1bb", "", 400, "control characters"),
      Row("secret", "GET", "/v1/secret/data/a%zz", "", 400, "percent-encoding"),
      Row("secret", "GET", "/v1/secret/data/a%2", "", 400, "percent-encoding"),
      Row("secret", "POST", "/v1/secret/data/./known", "{\"data\":{\"k\":\"x\"}}", 400,
          "\\\"..\\\" segments"),
      Row("secret", "POST", "/v1/secret/data/", "{\"data\":{\"k\":\"x\"}}", 400, "path"),
      // Mount names and actions are case-sensitive, as in Vault.
      Row("secret", "GET", "/v1/SECRET/data/known", "", 404, "no handler for route"),
      Row("secret", "POST", "/v1/Secret/data/known", "{\"data\":{\"k\":\"x\"}}", 404,
          "no handler for route"),
      Row("secret", "GET", "/v1/secret/DATA/known", "", 404, "route"),
      Row("secret", "GET", "/V1/secret/data/known", "", 404, "paths start with /v1/"),
      Row("secret", "GET", "/v2/secret/data/known", "", 404, "route"),
      Row("secret", "GET", "/v1/nothing/here", "", 404, "route"),
      Row("secret", "PUT", "/v1/secret/nonsense/known", "{}", 404, "route"),
      Row("secret", "GET", "/v1/secret/data/known?version=abc", "", 400, "version"),
      Row("secret", "GET", "/v1/secret/data/known?version=-1", "", 400, "version"),
      Row("secret", "GET", "/v1/secret/data/known?version=1.5", "", 400, "version"),
      Row("secret", "GET", "/v1/secret/data/known?version=" + kPast64, "", 400, "version"),
      Row("secret", "GET", "/v1/secret/data/known?version=1%00", "", 400, "version"),
      Row("secret", "GET", "/v1/secret/data/known?version=%zz", "", 400, "query string"),
      Row("secret", "GET", "/v1/secret/data/" + std::string(9000, 'u'), "", 414, "URL"),
  };
}

Cases KvBodyCases() {
  const std::string data = "/v1/secret/data/known";
  const std::string metadata = "/v1/secret/metadata/known";
  return {
      Row("secret", "POST", data, "{\"data\":", 400, "syntax error"),
      Row("secret", "POST", data, "{\"data\":{\"k\":\"x\"}} extra", 400, "syntax error"),
      Row("secret", "POST", data, "[1,2]", 400, "expected a JSON object"),
      Row("secret", "POST", data, "\"" + kPlanted + "\"", 400, "expected a JSON object"),
      Row("secret", "POST", data, NestedBody("data", 70), 400, "nesting deeper than 64"),
      Row("secret", "POST", data, NestedBody("data", 10000), 400, "nesting deeper than 64"),
      Row("secret", "POST", data, "{\"data\":{\"k\":\"a\",\"k\":\"" + kPlanted + "\"}}", 400,
          "duplicate key \\\"k\\\""),
      Row("secret", "POST", data, "{\"data\":{\"k\":\"a\"},\"data\":{\"k\":\"" + kPlanted + "\"}}",
          400, "duplicate key \\\"data\\\""),
      Row("secret", "POST", data, "{\"data\":{\"k\":1e400}}", 400, "out of range"),
      Row("secret", "POST", data, "{\"data\":{\"k\":-1e400}}", 400, "out of range"),
      Row("secret", "POST", data, "{\"data\":\"" + kPlanted + "\"}", 400, "data"),
      Row("secret", "POST", data, "{\"data\":[\"" + kPlanted + "\"]}", 400, "data"),
      Row("secret", "POST", data, "{}", 400, "data"),
      Row("secret", "POST", data, "{\"data\":{\"k\":\"\xff\xfe\"}}", 400, "syntax error"),
      Row("secret", "POST", data, "{\"data\":{\"\xc0\xae\":\"x\"}}", 400, "syntax error"),
      Row("secret", "POST", data, "{\"data\":{\"k\":\"\\ud800\"}}", 400, "syntax error"),
      Row("secret", "POST", data, std::string("{\"data\":{\"k\":\"a\0b\"}}", 21), 400,
          "syntax error"),
      Row("secret", "POST", data, "{\"data\":{\"k\":\"x\"},\"options\":{\"cas\":\"" + kPlanted +
          "\"}}", 400, "cas"),
      Row("secret", "POST", data, "{\"data\":{\"k\":\"x\"},\"options\":{\"cas\":" + kPast63 + "}}",
          400, "cas"),
      Row("secret", "POST", data, "{\"data\":{\"k\":\"x\"},\"options\":{\"cas\":1e400}}", 400,
          "out of range"),
      Row("secret", "POST", data, "{\"data\":{\"k\":\"x\"},\"options\":[1]}", 400, "options"),
      Row("secret", "POST", data, "{\"data\":{\"k\":\"x\"},\"options\":{\"cas\":0}}", 400,
          "check-and-set"),
      Row("secret", "PATCH", data, "{\"data\":{\"k\":\"x\"}}", 415, "merge-patch"),
      Row("secret", "LIST", data, "", 405, "LIST"),
      Row("secret", "POST", metadata, Field("max_versions", "\"many\""), 400, "max_versions"),
      Row("secret", "POST", metadata, Field("max_versions", kPast64), 400, "max_versions"),
      Row("secret", "POST", metadata, Field("max_versions", kPast63), 400, "max_versions"),
      Row("secret", "POST", metadata, Field("max_versions", "-1"), 400, "max_versions"),
      Row("secret", "POST", metadata, Field("max_versions", "1.5"), 400, "max_versions"),
      Row("secret", "POST", metadata, Field("cas_required", "\"maybe\""), 400, "cas_required"),
      Row("secret", "POST", metadata, Field("custom_metadata", "{\"a\":1}"), 400,
          "custom_metadata"),
      Row("secret", "POST", metadata, Field("delete_version_after", "\"forever\""), 400,
          "delete_version_after"),
      Row("secret", "POST", metadata, Field("delete_version_after", kPast64), 400,
          "delete_version_after"),
      MergePatch(Row("secret", "PATCH", metadata, Field("max_versions", "\"x\""), 400,
                     "max_versions")),
      // Two Content-Type fields: the first one counts.
      WithHeaders(Row("secret", "PATCH", metadata, Field("max_versions", "1"), 415,
                      "merge-patch"),
                  "Content-Type: application/merge-patch+json\r\n"),
      Row("secret", "POST", "/v1/secret/destroy/known", Field("versions", "\"a,b\""), 400,
          "versions"),
      Row("secret", "POST", "/v1/secret/destroy/known", Field("versions", "[" + kPast63 + "]"),
          400, "versions"),
      Row("secret", "GET", "/v1/secret/destroy/known", "", 405, "GET"),
      Row("secret", "POST", "/v1/secret/delete/known", "{}", 400, "versions"),
      Row("secret", "POST", "/v1/secret/delete/known", Field("versions", "[0]"), 400, "versions"),
      Row("secret", "POST", "/v1/secret/undelete/known", Field("versions", "{\"a\":1}"), 400,
          "versions"),
      Row("secret", "POST", "/v1/secret/undelete/known", Field("versions", "[-3]"), 400,
          "versions"),
      Row("secret", "POST", "/v1/secret/config", Field("max_versions", "\"all\""), 400,
          "max_versions"),
      Row("secret", "DELETE", "/v1/secret/config", "", 405, "DELETE"),
      Row("secret", "PATCH", "/v1/secret/config", "{}", 405, "PATCH"),
  };
}

// Methods the server does not implement, on every kind of route.
Cases MethodCases() {
  return {
      Row("secret", "FOO", "/v1/secret/data/known", "", 405, "FOO"),
      Row("secret", "get", "/v1/secret/data/known", "", 405, "get"),
      Row("secret", "TRACE", "/v1/secret/data/known", "", 405, "TRACE"),
      Row("secret", "OPTIONS", "/v1/secret/metadata/known", "", 405, "OPTIONS"),
      Row("sys/health", "BREW", "/v1/sys/health", "", 405, "BREW"),
      Row("sys/health", "DELETE", "/v1/sys/health", "", 405, "DELETE"),
  };
}

// Tokens that must not authenticate: bad checksum, wrong prefix, too long, non-ASCII, and
// the root token where it cannot count.
Cases TokenCredentialCases() {
  const std::string body43(43, 'A');
  const auto with_token = [](const std::string& header) {
    return Anonymous(WithHeaders(
        Row("secret", "GET", "/v1/secret/data/known", "", 403, "permission denied"), header));
  };
  return {
      with_token("X-Vault-Token: kw." + body43 + "zzzzzz\r\n"),
      with_token("X-Vault-Token: hvs." + body43 + "\r\n"),
      with_token("X-Vault-Token: kw." + std::string(4000, 'A') + "\r\n"),
      with_token("X-Vault-Token: kw.\xc3\xa9\xc3\xa9" + body43 + "\r\n"),
      with_token("X-Vault-Token: e2e-root-token\xff\r\n"),
      with_token("X-Vault-Token: E2E-ROOT-TOKEN\r\n"),
      with_token("X-Vault-Token: e2e-root-toke\r\n"),
      with_token("Authorization: Bearer \r\n"),
      with_token("Authorization: Basic ZTJlLXJvb3QtdG9rZW46\r\n"),
      with_token("Authorization: e2e-root-token\r\n"),
      // Two tokens are refused outright, whichever one is valid.
      [&] {
        HostileCase row =
            with_token("X-Vault-Token: e2e-wrong\r\nX-Vault-Token: e2e-root-token\r\n");
        row.status = 400;
        row.error = "send the token once";
        return row;
      }(),
      Anonymous(Row("secret", "POST", "/v1/secret/data/known", "{\"data\":{\"k\":\"x\"}}", 403,
                    "permission denied")),
      Anonymous(WithHeaders(Row("secret", "DELETE", "/v1/secret/metadata/known", "", 403,
                                "permission denied"),
                            "X-Vault-Token: e2e-wrong\r\n")),
      Anonymous(WithHeaders(Row("sys/seal", "PUT", "/v1/sys/seal", "", 403, "permission denied"),
                            "Authorization: Bearer e2e-wrong\r\n")),
  };
}

Cases SysCases() {
  return {
      Row("sys/health", "POST", "/v1/sys/health", "{}", 405, "sys/health"),
      Row("sys/health", "GET", "/v1/sys/health?activecode=1000", "", 400, "activecode"),
      Row("sys/health", "GET", "/v1/sys/health?activecode=99", "", 400, "activecode"),
      Row("sys/health", "GET", "/v1/sys/health?activecode=" + kPast64, "", 400, "activecode"),
      Row("sys/health", "GET", "/v1/sys/health?sealedcode=abc", "", 400, "sealedcode"),
      Row("sys/health", "GET", "/v1/Sys/health", "", 404, "no handler for route"),
      Row("sys/health", "GET", "/v1/sys/Health", "", 404, "no handler for route"),
      Row("sys/seal-status", "POST", "/v1/sys/seal-status", "{}", 405, "sys/seal-status"),
      Row("sys/init", "PUT", "/v1/sys/init", Field("pin", "5"), 400, "pin"),
      Row("sys/init", "PUT", "/v1/sys/init", NestedBody("pin", 10000), 400, "nesting deeper"),
      Row("sys/init", "PUT", "/v1/sys/init", "{\"pin\":\"a\",\"pin\":\"b\"}", 400,
          "duplicate key"),
      Row("sys/unseal", "PUT", "/v1/sys/unseal", Field("key", "[\"" + kPlanted + "\"]"), 400,
          "key"),
      Row("sys/unseal", "PUT", "/v1/sys/unseal", "{\"key\":\"" + kPlanted, 400, "syntax error"),
      Row("sys/unseal", "PUT", "/v1/sys/unseal", NestedBody("key", 10000), 400, "nesting deeper"),
      Row("sys/seal", "GET", "/v1/sys/seal", "", 405, "GET"),
      Row("sys/seal", "POST", "/v1/sys/seal", "{\"reason\":", 400, "syntax error"),
      Row("sys/seal", "POST", "/v1/sys/seal", NestedBody("reason", 10000), 400, "nesting deeper"),
      Row("sys/rotate", "GET", "/v1/sys/rotate", "", 405, "GET"),
      Row("sys/rotate", "POST", "/v1/sys/rotate", "{\"a\":1,\"a\":2}", 400, "duplicate key"),
      Row("sys/key-status", "POST", "/v1/sys/key-status", "{}", 405, "POST"),
      Row("sys/audit/verify", "POST", "/v1/sys/audit/verify", "{}", 405, "POST"),
      Row("sys/audit-hash/", "GET", "/v1/sys/audit-hash/file", "", 405, "GET"),
      Row("sys/audit-hash/", "POST", "/v1/sys/audit-hash/database", Field("input", "5"), 400,
          "input"),
      Row("sys/mounts", "POST", "/v1/sys/mounts", "{}", 405, "POST"),
      Row("sys/auth", "DELETE", "/v1/sys/auth", "", 405, "DELETE"),
      Row("sys/internal/ui/mounts/", "GET", "/v1/sys/internal/ui/mounts/%2e%2e", "", 400,
          "\\\"..\\\" segments"),
      Row("sys/internal/ui/mounts/", "GET", "/v1/sys/internal/ui/mounts/SECRET", "", 400,
          "no mount"),
      Row("sys/", "GET", "/v1/sys/nothing", "", 404, "no handler for route"),
      Row("sys/metrics", "POST", "/v1/sys/metrics", "{}", 405, "POST"),
      Row("sys/metrics", "GET", "/v1/sys/metrics?format=xml", "", 400, "format"),
  };
}

Cases PolicyCases() {
  const std::string acl = "/v1/sys/policies/acl/hostile-policy";
  const std::string deep_policy =
      "{\"path\":" + std::string(10000, '[') + std::string(10000, ']') + "}";
  return {
      Row("sys/policies/", "PUT", acl, Field("policy", "5"), 400, "policy"),
      Row("sys/policies/", "PUT", acl, "{}", 400, "policy"),
      Row("sys/policies/", "PUT", acl, Field("policy", Quoted(deep_policy)), 400,
          "nesting deeper than 16"),
      Row("sys/policies/", "PUT", acl,
          Field("policy", Quoted("{\"path\":{\"a\":{\"capabilities\":[\"deny\"]}}," +
                                 std::string("\"path\":{\"b\":{\"capabilities\":[\"read\"]}}}"))),
          400, "duplicate key \\\"path\\\""),
      Row("sys/policies/", "PUT", acl,
          Field("policy", Quoted("path \"a\" { capabilities = [\"fly\"] }")), 400, "fly"),
      Row("sys/policies/", "PUT", acl,
          Field("policy", Quoted("path \"a\" { capabilities = [\"read\"]")), 400, "policy"),
      Row("sys/policies/", "PUT", acl, "{\"policy\":\"path \\\"a\\\" {}\",\"policy\":\"x\"}", 400,
          "duplicate key"),
      Row("sys/policies/", "PUT", "/v1/sys/policies/acl/a%2fb", "{\"policy\":\"\"}", 400,
          "encoded slashes"),
      Row("sys/policies/", "PUT", "/v1/sys/policies/acl/root", Field("policy", "\"\""), 400,
          "root"),
      Row("sys/policy", "PUT", "/v1/sys/policy/hostile-policy", Field("rules", "[1]"), 400,
          "rules"),
      Row("sys/policy/", "DELETE", "/v1/sys/policy/..", "", 400, "\\\"..\\\" segments"),
      Row("sys/capabilities", "POST", "/v1/sys/capabilities",
          "{\"token\":\"" + kPlanted + "\",\"paths\":5}", 400, "paths"),
      Row("sys/capabilities", "POST", "/v1/sys/capabilities-self", Field("paths", "{}"), 400,
          "paths"),
  };
}

Cases LeaseCases() {
  return {
      Row("sys/leases/", "PUT", "/v1/sys/leases/lookup", Field("lease_id", "5"), 400, "lease_id"),
      Row("sys/leases/", "PUT", "/v1/sys/leases/lookup", "{}", 400, "lease_id"),
      Row("sys/leases/", "PUT", "/v1/sys/leases/renew",
          "{\"lease_id\":\"database/creds/x/y\",\"increment\":\"forever\"}", 400, "increment"),
      Row("sys/leases/", "PUT", "/v1/sys/leases/revoke", Field("lease_id", "[1]"), 400,
          "lease_id"),
      Row("sys/revoke", "PUT", "/v1/sys/revoke", "{}", 400, "lease_id"),
      Row("sys/revoke/", "PUT", "/v1/sys/revoke/database%2fcreds", "{}", 400, "encoded slashes"),
      Row("sys/revoke-prefix/", "PUT", "/v1/sys/revoke-prefix/database", "{\"sync\":", 400,
          "syntax error"),
      Row("sys/revoke-force/", "PUT", "/v1/sys/revoke-force/database", NestedBody("a", 10000),
          400, "nesting deeper"),
      Row("sys/renew", "PUT", "/v1/sys/renew", Field("lease_id", "{}"), 400, "lease_id"),
      Row("sys/renew/", "PUT", "/v1/sys/renew/nope", Field("increment", kPast64), 400,
          "increment"),
  };
}

Cases AuditCases() {
  return {
      Row("sys/audit/records", "GET", "/v1/sys/audit/records?limit=abc", "", 400, "limit"),
      Row("sys/audit/records", "GET", "/v1/sys/audit/records?limit=" + kPast64, "", 400, "limit"),
      Row("sys/audit/records", "GET", "/v1/sys/audit/records?order=sideways", "", 400, "order"),
      Row("sys/audit/records", "GET", "/v1/sys/audit/records?format=xml", "", 400, "format"),
      Row("sys/audit/records", "GET", "/v1/sys/audit/records?status=abc", "", 400, "status"),
      Row("sys/audit/records", "GET", "/v1/sys/audit/records?from=yesterday", "", 400, "from"),
      // The name is echoed in the error shortened to 256 bytes, never whole.
      Row("sys/audit/records", "GET",
          "/v1/sys/audit/records?" + std::string(5000, 'q') + "=1", "", 400,
          std::string(256, 'q') + "..."),
      Row("sys/audit/checkpoints", "GET", "/v1/sys/audit/checkpoints?limit=-1", "", 400, "limit"),
      Row("sys/audit/prune", "POST", "/v1/sys/audit/prune", Field("older_than", "\"yesterday\""),
          400, "older_than"),
      Row("sys/audit/prune", "POST", "/v1/sys/audit/prune", Field("older_than", kPast64), 400,
          "older_than"),
      Row("sys/audit/proof/inclusion", "GET", "/v1/sys/audit/proof/inclusion?index=abc", "", 400,
          "index"),
      Row("sys/audit/proof/inclusion", "GET", "/v1/sys/audit/proof/inclusion", "", 400, "index"),
      Row("sys/audit/proof/consistency", "GET",
          "/v1/sys/audit/proof/consistency?first=0&second=" + kPast64, "", 400, "second"),
      Row("sys/audit/public-key", "POST", "/v1/sys/audit/public-key", "{}", 405, "POST"),
      Row("sys/audit/checkpoint", "DELETE", "/v1/sys/audit/checkpoint", "", 405, "DELETE"),
  };
}

Cases TokenCases() {
  const std::string create = "/v1/auth/token/create";
  return {
      Row("auth/token/", "POST", create, Field("ttl", "\"forever\""), 400, "ttl"),
      Row("auth/token/", "POST", create, Field("ttl", "1e400"), 400, "out of range"),
      Row("auth/token/", "POST", create, Field("ttl", kPast64), 400, "ttl"),
      Row("auth/token/", "POST", create, Field("ttl", "-5"), 400, "ttl"),
      Row("auth/token/", "POST", create, Field("num_uses", kPast63), 400, "num_uses"),
      Row("auth/token/", "POST", create, Field("num_uses", "\"many\""), 400, "num_uses"),
      Row("auth/token/", "POST", create, Field("policies", "5"), 400, "policies"),
      Row("auth/token/", "POST", create, Field("policies", "[\"default\",5]"), 400, "policies"),
      Row("auth/token/", "POST", create, Field("meta", "{\"a\":1}"), 400, "meta"),
      Row("auth/token/", "POST", create, Field("renewable", "\"perhaps\""), 400, "renewable"),
      Row("auth/token/", "POST", create, Field("id", "[\"" + kPlanted + "\"]"), 400, "id"),
      Row("auth/token/", "POST", create, "{\"policies\":[\"a\"],\"policies\":[\"root\"]}", 400,
          "duplicate key"),
      Row("auth/token/", "POST", create, NestedBody("meta", 10000), 400, "nesting deeper"),
      Row("auth/token/", "POST", "/v1/auth/token/lookup", Field("token", "5"), 400, "token"),
      Row("auth/token/", "POST", "/v1/auth/token/revoke", Field("token", "[1]"), 400, "token"),
      Row("auth/token/", "POST", "/v1/auth/token/lookup-accessor", Field("accessor", "{}"), 400,
          "accessor"),
      Row("auth/token/", "POST", "/v1/auth/token/renew-self", Field("increment", "\"soon\""), 400,
          "increment"),
      Row("auth/token/", "POST", "/v1/auth/token/roles/hostile", Field("allowed_policies", "5"),
          400, "allowed_policies"),
      Row("auth/token/", "POST", "/v1/auth/token/roles/hostile", Field("token_num_uses", kPast63),
          400, "token_num_uses"),
      Row("auth/token/", "POST", "/v1/auth/token/create/%2e%2e", "{}", 400, "\\\"..\\\" segments"),
      Row("auth/token/", "GET", "/v1/Auth/token/lookup-self", "", 404, "no handler for route"),
  };
}

Cases AppRoleCases() {
  const std::string role = "/v1/auth/approle/role/hostile-role";
  const std::string metadata_deep = Quoted(NestedBody("a", 10000));
  return {
      Row("auth/approle/", "POST", role, Field("token_ttl", "\"nope\""), 400, "token_ttl"),
      Row("auth/approle/", "POST", role, Field("secret_id_num_uses", "\"many\""), 400,
          "secret_id_num_uses"),
      Row("auth/approle/", "POST", role, Field("secret_id_num_uses", kPast63), 400,
          "secret_id_num_uses"),
      Row("auth/approle/", "POST", role, Field("bind_secret_id", "\"maybe\""), 400,
          "bind_secret_id"),
      Row("auth/approle/", "POST", role, Field("token_policies", "{}"), 400, "token_policies"),
      Row("auth/approle/", "POST", role, Field("token_type", "\"batch\""), 400, "token_type"),
      Row("auth/approle/", "POST", role + "/secret-id", Field("metadata", "\"{\\\"a\\\":1}\""),
          400, "metadata"),
      Row("auth/approle/", "POST", role + "/secret-id", Field("metadata", metadata_deep), 400,
          "metadata"),
      Row("auth/approle/", "POST", role + "/secret-id",
          Field("metadata", Quoted("{\"a\":\"x\",\"a\":\"y\"}")), 400, "metadata"),
      Row("auth/approle/", "POST", role + "/secret-id", Field("cidr_list", "[5]"), 400,
          "cidr_list"),
      Row("auth/approle/", "POST", "/v1/auth/approle/role/a%2fb", "{}", 400, "encoded slashes"),
      Anonymous(Row("auth/approle/", "POST", "/v1/auth/approle/login",
                    "{\"role_id\":5,\"secret_id\":\"" + kPlanted + "\"}", 400, "role_id")),
      Anonymous(Row("auth/approle/", "POST", "/v1/auth/approle/login", "{\"role_id\":\"", 400,
                    "syntax error")),
      Anonymous(Row("auth/approle/", "POST", "/v1/auth/approle/login",
                    "{\"role_id\":\"a\",\"role_id\":\"b\"}", 400, "duplicate key")),
      Anonymous(Row("auth/approle/", "POST", "/v1/auth/approle/login", NestedBody("role_id", 10000),
                    400, "nesting deeper")),
      Anonymous(Row("auth/approle/", "POST", "/v1/auth/approle/login",
                    "{\"role_id\":\"" + std::string(70000, 'r') + "\"}", 403,
                    "permission denied")),
  };
}

Cases CertCases() {
  const std::string certs = "/v1/auth/cert/certs/hostile";
  return {
      Row("auth/cert/", "POST", certs, Field("certificate", "5"), 400, "certificate"),
      Row("auth/cert/", "POST", certs, Field("certificate", "\"not a PEM " + kPlanted + "\""), 400,
          "certificate"),
      Row("auth/cert/", "POST", certs, Field("token_num_uses", "\"x\""), 400, "token_num_uses"),
      Row("auth/cert/", "POST", certs, NestedBody("certificate", 10000), 400, "nesting deeper"),
      Row("auth/cert/", "POST", "/v1/auth/cert/certs/%2e%2e", "{}", 400, "\\\"..\\\" segments"),
      Anonymous(Row("auth/cert/", "POST", "/v1/auth/cert/login", "{\"name\":", 400,
                    "syntax error")),
      Anonymous(Row("auth/cert/", "POST", "/v1/auth/cert/login", "{}", 400, "certificate")),
  };
}

Cases DatabaseCases() {
  const std::string config = "/v1/database/config/hostile";
  const auto config_with = [](const std::string& name, const std::string& value) {
    return "{\"plugin_name\":\"postgresql-database-plugin\",\"" + name + "\":" + value + "}";
  };
  return {
      Row("database/", "POST", config, config_with("max_open_connections", "\"many\""), 400,
          "max_open_connections"),
      Row("database/", "POST", config, config_with("max_open_connections", kPast63), 400,
          "max_open_connections"),
      Row("database/", "POST", config, config_with("connection_url", "5"), 400,
          "connection_url"),
      Row("database/", "POST", config, config_with("verify_connection", "\"sometimes\""), 400,
          "verify_connection"),
      Row("database/", "POST", config, config_with("allowed_roles", "{}"), 400, "allowed_roles"),
      Row("database/", "POST", config, Field("max_open_connections", "1"), 400, "plugin_name"),
      Row("database/", "POST", config,
          "{\"plugin_name\":\"postgresql-database-plugin\",\"password\":\"" + kPlanted +
              "\",\"password\":\"x\"}",
          400, "duplicate key"),
      Row("database/", "POST", "/v1/database/roles/hostile", Field("default_ttl", "\"forever\""),
          400, "default_ttl"),
      Row("database/", "POST", "/v1/database/roles/hostile", Field("max_ttl", kPast64), 400,
          "max_ttl"),
      Row("database/", "POST", "/v1/database/static-roles/hostile",
          Field("rotation_period", "-5"), 400, "rotation_period"),
      Row("database/", "POST", "/v1/database/static-roles/hostile",
          "{\"rotation_period\":\"1h\",\"rotation_statements\":5}", 400,
          "rotation_statements"),
      Row("database/", "GET", "/v1/database/creds/%2e%2e", "", 400, "\\\"..\\\" segments"),
      Row("database/", "GET", "/v1/DATABASE/creds/x", "", 404, "no handler for route"),
      // The bare mount path once threw std::out_of_range in the handler (500).
      Row("database", "POST", "/v1/database", "{}", 404, "no handler for route"),
  };
}

Cases PkiCases() {
  const std::string root = "/v1/pki/root/generate/internal";
  const auto root_with = [](const std::string& name, const std::string& value) {
    return "{\"trust_domain\":\"example.org\",\"" + name + "\":" + value + "}";
  };
  return {
      Row("pki/", "POST", root, Field("trust_domain", "5"), 400, "trust_domain"),
      Row("pki/", "POST", root, root_with("ttl", "\"forever\""), 400, "ttl"),
      Row("pki/", "POST", root, root_with("ttl", kPast64), 400, "ttl"),
      Row("pki/", "POST", root, root_with("common_name", "[1]"), 400, "common_name"),
      Row("pki/", "POST", root, "{\"trust_domain\":\"example.org\",\"trust_domain\":\"x.org\"}",
          400, "duplicate key"),
      Row("pki/", "POST", "/v1/pki/roles/hostile", Field("allowed_spiffe_ids", "5"), 400,
          "allowed_spiffe_ids"),
      Row("pki/", "POST", "/v1/pki/roles/hostile", Field("key_bits", "\"big\""), 400,
          "key_bits"),
      Row("pki/", "POST", "/v1/pki/roles/hostile", Field("key_bits", kPast63), 400, "key_bits"),
      Row("pki/", "POST", "/v1/pki/roles/hostile", Field("ttl", "1e400"), 400, "out of range"),
      Row("pki/", "POST", "/v1/pki/issue/hostile", Field("spiffe_id", "5"), 400, "spiffe_id"),
      Row("pki/", "POST", "/v1/pki/issue/hostile", Field("ttl", kPast64), 400, "ttl"),
      Row("pki/", "POST", "/v1/pki/sign/hostile", Field("csr", "5"), 400, "csr"),
      Row("pki/", "POST", "/v1/pki/jwt/issue/hostile", Field("audience", "5"), 400, "audience"),
      Row("pki/", "POST", "/v1/pki/jwt/issue/hostile", NestedBody("audience", 10000), 400,
          "nesting deeper"),
      Row("pki/", "POST", "/v1/pki/jwt/verify", Field("token", "5"), 400, "token"),
      Row("pki/", "POST", "/v1/pki/config", Field("trust_domain", "5"), 405, "pki/config"),
      Row("pki/", "POST", "/v1/pki/revoke", Field("serial_number", "5"), 400, "serial_number"),
      Row("pki/", "POST", "/v1/pki/tidy", Field("safety_buffer", "\"forever\""), 400,
          "safety_buffer"),
      Row("pki/", "GET", "/v1/pki/cert/%2e%2e", "", 400, "\\\"..\\\" segments"),
      Row("pki/", "GET", "/v1/pki/bundles/a%00b", "", 400, "NUL bytes"),
      Row("pki/", "POST", "/v1/pki/ca", "{}", 404, "no handler for route"),
      Row("pki", "POST", "/v1/pki", "{}", 404, "errors"),
  };
}

// Framing: malformed request lines and headers, conflicting lengths, bad chunking and request
// smuggling. Sent byte for byte.
Cases FramingCases() {
  const std::string get = "GET /v1/sys/health HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  const std::string post = "POST /v1/secret/data/smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           "X-Vault-Token: {token}\r\nContent-Type: application/json\r\n";
  const std::string write = "{\"data\":{\"k\":\"" + kPlanted + "\"}}";
  const std::string length = "Content-Length: " + std::to_string(write.size()) + "\r\n";
  std::string many_headers;
  for (int i = 0; i < 101; ++i) many_headers += "X-Filler-" + std::to_string(i) + ": a\r\n";
  return {
      Raw("framing", post + length + "Transfer-Encoding: chunked\r\n\r\n" + write, 400,
          "invalid HTTP request"),
      Raw("framing", post + "Transfer-Encoding: chunked\r\n" + length + "\r\n" + write, 400,
          "invalid HTTP request"),
      Raw("framing", post + length + length + "\r\n" + write, 400, "invalid HTTP request"),
      // A second credential, which a proxy might take instead of the first.
      Raw("framing", post + "X-Vault-Token: e2e-second-token\r\n" + length + "\r\n" + write, 400,
          "send the token once"),
      Raw("framing",
          post + "Authorization: Bearer a\r\nAuthorization: Bearer b\r\n" + length + "\r\n" +
              write,
          400, "send the token once"),
      Raw("framing", post + length + "Content-Length: 2\r\n\r\n" + write, 400,
          "invalid HTTP request"),
      Raw("framing", post + "Content-Length: 27, 27\r\n\r\n" + write, 400,
          "invalid HTTP request"),
      Raw("framing", post + "Content-Length: +27\r\n\r\n" + write, 400, "invalid HTTP request"),
      Raw("framing", post + "Content-Length: -1\r\n\r\n" + write, 400, "invalid HTTP request"),
      Raw("framing", post + "Content-Length: 0x1b\r\n\r\n" + write, 400, "invalid HTTP request"),
      Raw("framing", post + "Content-Length: 99999999999999999999999\r\n\r\n" + write, 400,
          "invalid HTTP request"),
      Raw("framing", post + "Transfer-Encoding: chunked, identity\r\n\r\n" + write, 400,
          "Transfer-Encoding"),
      Raw("framing", post + "Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n", 400,
          "Transfer-Encoding"),
      Raw("framing", post + "Transfer-Encoding: gzip\r\n\r\n" + write, 400, "Transfer-Encoding"),
      Raw("framing", post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
          400, "Transfer-Encoding"),
      // Beast unfolds obs-fold into a space, as RFC 9112 allows, so the folded
      // Transfer-Encoding still conflicts with the Content-Length.
      Raw("framing", post + length + "Transfer-Encoding:\r\n chunked\r\n\r\n" + write, 400,
          "invalid HTTP request"),
      Raw("framing", post + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400,
          "invalid HTTP request"),
      Raw("framing", post + "Transfer-Encoding: chunked\r\n\r\nffffffffff\r\n" + write, 413,
          "request body too large"),
      Raw("framing", post + "Transfer-Encoding: chunked\r\n\r\n" + std::string(40, 'f') +
          "\r\n" + write, 400, "invalid HTTP request"),
      Raw("framing", post + "Transfer-Encoding: chunked\r\n\r\n-5\r\n" + write, 400,
          "invalid HTTP request"),
      Raw("framing", post + "Transfer-Encoding: chunked\r\n\r\n2\r\n" + write + "\r\n0\r\n\r\n",
          400, "invalid HTTP request"),
      Raw("framing", "GET /v1/sys/health HTTP/1.1\nHost: 127.0.0.1\n\n", 400,
          "invalid HTTP request"),
      Raw("framing", "GET /v1/sys/health HTTP/1.1\r\nHost: 127.0.0.1\n\r\n", 400,
          "invalid HTTP request"),
      Raw("framing", "GET /v1/sys/health HTTP/1.1\rHost: 127.0.0.1\r\n\r\n", 400,
          "invalid HTTP request"),
      Raw("framing", "GET /v1/sys/health HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n", 400, "bad version"),
      Raw("framing", "GET /v1/sys/health HTTP/1.1 extra\r\nHost: 127.0.0.1\r\n\r\n", 400,
          "invalid HTTP request"),
      Raw("framing", "GET  /v1/sys/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400,
          "invalid HTTP request"),
      Raw("framing", std::string("GET /v1/sys/health\0 HTTP/1.1\r\nHost: x\r\n\r\n", 41), 400,
          "invalid HTTP request"),
      Raw("framing", get + "Bad Header: x\r\n\r\n", 400, "invalid HTTP request"),
      Raw("framing", get + "NoColon\r\n\r\n", 400, "invalid HTTP request"),
      Raw("framing", get + std::string("X-Nul: a\0b\r\n\r\n", 14), 400, "invalid HTTP request"),
      Raw("framing", get + "X-Big: " + std::string(20000, 'h') + "\r\n\r\n", 431, "header"),
      Raw("framing", get + many_headers + "\r\n", 431, "header fields"),
      Raw("framing", "GET /v1/secret/data/" + std::string(9000, 'u') + " HTTP/1.1\r\n\r\n", 414,
          "URL"),
      Raw("framing", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", 400,
          "invalid HTTP request"),
  };
}

}  // namespace

std::string BuildRawRequest(const std::string& method, const std::string& target,
                            const std::string& headers, const std::string& body) {
  std::string request = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers +
                        "Connection: close\r\n";
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    request += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  return request + "\r\n" + body;
}

std::string NestedBody(const std::string& field, int depth) {
  return "{\"" + field + "\":" + std::string(static_cast<std::size_t>(depth), '[') +
         std::string(static_cast<std::size_t>(depth), ']') + "}";
}

std::vector<HostileCase> HostileCases() {
  std::vector<HostileCase> all;
  for (Cases family : {KvPathCases(), KvBodyCases(), MethodCases(), TokenCredentialCases(),
                       SysCases(), PolicyCases(), LeaseCases(), AuditCases(), TokenCases(),
                       AppRoleCases(), CertCases(), DatabaseCases(), PkiCases(),
                       FramingCases()}) {
    for (HostileCase& row : family) all.push_back(std::move(row));
  }
  return all;
}

}  // namespace kw::e2e
