// Checkpoints and proofs through the real binary, checked by tools that share no code with
// keyward: the openssl command verifies the Ed25519 checkpoint signature, and a short Python
// program recomputes the RFC 6962 root from the stored records and checks the proofs.
#include <doctest/doctest.h>

#include <openssl/evp.h>

#include <fstream>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

namespace fs = std::filesystem;

// RFC 6962 / RFC 9162 in Python, written from the RFC text: the root of the records in a
// JSON-lines file, and verification of inclusion and consistency proofs.
constexpr std::string_view kPythonChecker = R"PY(
import base64, hashlib, json, sys

def leaf(b): return hashlib.sha256(b"\x00" + b).digest()
def node(l, r): return hashlib.sha256(b"\x01" + l + r).digest()

def root(leaves):
    n = len(leaves)
    if n == 0: return hashlib.sha256(b"").digest()
    if n == 1: return leaves[0]
    k = 1
    while k * 2 < n: k *= 2
    return node(root(leaves[:k]), root(leaves[k:]))

def verify_inclusion(i, n, h, path, want):
    if i >= n: return False
    fn, sn, r = i, n - 1, h
    for p in path:
        if sn == 0: return False
        if fn % 2 == 1 or fn == sn:
            r = node(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1; sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1; sn >>= 1
    return sn == 0 and r == want

def verify_consistency(m, n, old, new, proof):
    if m == n: return len(proof) == 0 and old == new
    if m == 0 or m > n or not proof: return False
    if m & (m - 1) == 0: proof = [old] + proof
    fn, sn = m - 1, n - 1
    while fn % 2 == 1:
        fn >>= 1; sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0: return False
        if fn % 2 == 1 or fn == sn:
            fr = node(c, fr); sr = node(c, sr)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1; sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1; sn >>= 1
    return fr == old and sr == new and sn == 0

b64 = lambda s: base64.b64decode(s)
records = [line.rstrip(b"\n") for line in open(sys.argv[1], "rb")]
leaves = [leaf(r) for r in records]
query = json.load(open(sys.argv[2]))
out = {"roots": {}, "inclusion": [], "consistency": []}
for size in query["sizes"]:
    out["roots"][str(size)] = base64.b64encode(root(leaves[:size])).decode()
for p in query["inclusion"]:
    i, n = p["index"], p["tree_size"]
    out["inclusion"].append(leaf(records[i]) == b64(p["leaf_hash"]) and
                            verify_inclusion(i, n, leaves[i], [b64(x) for x in p["proof"]],
                                             root(leaves[:n])))
for p in query["consistency"]:
    out["consistency"].append(verify_consistency(
        p["first"], p["second"], b64(p["first_root"]), b64(p["second_root"]),
        [b64(x) for x in p["proof"]]))
print(json.dumps(out))
)PY";

// Standard base64 with padding, through OpenSSL's block coder.
std::string EncodeBase64(const std::string& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int written = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                      reinterpret_cast<const unsigned char*>(bytes.data()),
                                      static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(written));
  return out;
}

std::string DecodeBase64(const std::string& text) {
  std::string out(3 * text.size() / 4 + 1, '\0');
  const int written = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                      reinterpret_cast<const unsigned char*>(text.data()),
                                      static_cast<int>(text.size()));
  REQUIRE_MESSAGE(written >= 0, "invalid base64: " << text);
  std::size_t size = static_cast<std::size_t>(written);
  // EVP_DecodeBlock counts the padding as zero bytes.
  if (text.ends_with("==")) size -= 2;
  else if (text.ends_with("=")) size -= 1;
  out.resize(size);
  return out;
}

// Writes the stored records 1..size, one canonical record per line, to `path`.
void ExportRecords(const fs::path& db_path, std::uint64_t size, const fs::path& path) {
  Database db(db_path);
  std::ofstream out(path, std::ios::binary);
  for (std::uint64_t seq = 1; seq <= size; ++seq) {
    const std::optional<std::string> record = db.Get(AuditRecordKey(seq));
    REQUIRE_MESSAGE(record.has_value(), "record " << seq << " missing");
    out << *record << '\n';
  }
}

// Runs the Python checker on the records file and the query, and returns its output.
json RunPythonChecker(const fs::path& dir, const fs::path& records, const json& query) {
  WriteTextFile(dir / "checker.py", std::string(kPythonChecker));
  WriteTextFile(dir / "query.json", query.dump());
  // Debian's python3 in /usr/bin: the standard library is all the checker needs.
  const ExitResult run = RunProgram(
      "/usr/bin/python3",
      {(dir / "checker.py").string(), records.string(), (dir / "query.json").string()}, {});
  REQUIRE_MESSAGE(run.exit_code == 0, run.err);
  return json::parse(run.out);
}

// Returns the DER SubjectPublicKeyInfo of a raw Ed25519 key, as PEM.
std::string Ed25519PublicPem(const std::string& raw_base64) {
  // SEQUENCE { SEQUENCE { OID 1.3.101.112 } BIT STRING { key } }, RFC 8410.
  const std::string prefix_hex = "302a300506032b6570032100";
  std::string der;
  for (std::size_t i = 0; i < prefix_hex.size(); i += 2) {
    der.push_back(static_cast<char>(std::stoi(prefix_hex.substr(i, 2), nullptr, 16)));
  }
  der += DecodeBase64(raw_base64);
  return "-----BEGIN PUBLIC KEY-----\n" + EncodeBase64(der) + "\n-----END PUBLIC KEY-----\n";
}

// Runs `openssl pkeyutl -verify` on `message` and `signature` with the PEM key.
bool OpensslVerifies(const fs::path& dir, const std::string& pem, const std::string& message,
                     const std::string& signature) {
  WriteTextFile(dir / "key.pem", pem);
  WriteTextFile(dir / "message", message);
  WriteTextFile(dir / "signature", signature);
  const ExitResult run = RunProgram(
      "/usr/bin/openssl",
      {"pkeyutl", "-verify", "-pubin", "-inkey", (dir / "key.pem").string(), "-rawin", "-in",
       (dir / "message").string(), "-sigfile", (dir / "signature").string()},
      {});
  return run.exit_code == 0;
}

// Splits a signed note into its text (with the final newline) and the first signature's
// bytes after the 4-byte key ID.
std::pair<std::string, std::string> SplitNote(const std::string& note) {
  const std::size_t end = note.find("\n\n");
  REQUIRE(end != std::string::npos);
  const std::string text = note.substr(0, end + 1);
  const std::string line = note.substr(end + 2);
  const std::string dash = "\xe2\x80\x94 ";
  REQUIRE(line.starts_with(dash));
  const std::size_t space = line.find(' ', dash.size());
  REQUIRE(space != std::string::npos);
  std::string encoded = line.substr(space + 1);
  if (!encoded.empty() && encoded.back() == '\n') encoded.pop_back();
  const std::string signature = DecodeBase64(encoded);
  REQUIRE(signature.size() == 4 + 64);
  return {text, signature.substr(4)};
}

json Data(const httplib::Result& result) {
  const json body = BodyOf(result);
  REQUIRE_MESSAGE(StatusOf(result) == 200, body.dump());
  return body["data"];
}

}  // namespace

TEST_SUITE("e2e/audit-proof") {
  TEST_CASE("checkpoint signature verifies with openssl") {
    DevServer server;
    REQUIRE(server.Start());
    auto client = server.Client();
    for (int i = 0; i < 5; ++i) {
      REQUIRE(StatusOf(WriteSecret(*client, "proof/s" + std::to_string(i), {{"v", i}})) == 200);
    }
    const json checkpoint = Data(client->Post("/v1/sys/audit/checkpoint", "", "application/json"));
    const json key = Data(client->Get("/v1/sys/audit/public-key"));
    CHECK(key["algorithm"] == "ed25519");
    CHECK(key["name"] == checkpoint["origin"]);
    CHECK(key["vkey"].get<std::string>().starts_with(key["name"].get<std::string>() + "+" +
                                                     key["key_id"].get<std::string>() + "+"));

    const std::string note = checkpoint["checkpoint"];
    const auto [text, signature] = SplitNote(note);
    CHECK(text == checkpoint["origin"].get<std::string>() + "\n" +
                      std::to_string(checkpoint["size"].get<std::uint64_t>()) + "\n" +
                      checkpoint["root"].get<std::string>() + "\n");
    TempDir dir;
    const std::string pem = Ed25519PublicPem(key["public_key"]);
    CHECK(OpensslVerifies(dir.path(), pem, text, signature));
    std::string forged = text;
    forged[forged.size() - 3] ^= 0x01;
    CHECK_FALSE(OpensslVerifies(dir.path(), pem, forged, signature));
  }

  TEST_CASE("root and proofs match an independent implementation") {
    DevServer server;
    REQUIRE(server.Start());
    auto client = server.Client();
    for (int i = 0; i < 6; ++i) {
      REQUIRE(StatusOf(WriteSecret(*client, "proof/a" + std::to_string(i), {{"v", i}})) == 200);
    }
    const json first = Data(client->Post("/v1/sys/audit/checkpoint", "", "application/json"));
    for (int i = 0; i < 11; ++i) {
      REQUIRE(StatusOf(client->Get("/v1/secret/data/proof/a" + std::to_string(i % 6))) == 200);
    }
    const json second = Data(client->Post("/v1/sys/audit/checkpoint", "", "application/json"));
    const std::uint64_t m = first["size"];
    const std::uint64_t n = second["size"];
    REQUIRE(m < n);

    json query = {{"sizes", {m, n}}, {"inclusion", json::array()}, {"consistency", json::array()}};
    for (std::uint64_t index : {std::uint64_t{0}, m / 2, m - 1, n - 1}) {
      query["inclusion"].push_back(Data(client->Get(
          "/v1/sys/audit/proof/inclusion?index=" + std::to_string(index) +
          "&tree_size=" + std::to_string(n))));
    }
    query["inclusion"].push_back(Data(client->Get("/v1/sys/audit/proof/inclusion?index=1&tree_size=" +
                                                  std::to_string(m))));
    const json consistency = Data(client->Get("/v1/sys/audit/proof/consistency?first=" +
                                              std::to_string(m) + "&second=" + std::to_string(n)));
    CHECK(consistency["first_root"] == first["root"]);
    CHECK(consistency["second_root"] == second["root"]);
    query["consistency"].push_back(consistency);
    for (std::uint64_t small = 1; small < n; small += 3) {
      query["consistency"].push_back(Data(client->Get(
          "/v1/sys/audit/proof/consistency?first=" + std::to_string(small) +
          "&second=" + std::to_string(n))));
    }
    // A proof with one hash flipped must fail in the independent checker too.
    json broken = consistency;
    std::string hash = broken["proof"][0];
    hash[0] = hash[0] == 'A' ? 'B' : 'A';
    broken["proof"][0] = hash;
    query["consistency"].push_back(broken);

    TempDir dir;
    ExportRecords(server.db_path(), n, dir.path() / "records.jsonl");
    const json checked = RunPythonChecker(dir.path(), dir.path() / "records.jsonl", query);
    CHECK(checked["roots"][std::to_string(m)] == first["root"]);
    CHECK(checked["roots"][std::to_string(n)] == second["root"]);
    for (std::size_t i = 0; i < checked["inclusion"].size(); ++i) {
      CHECK_MESSAGE(checked["inclusion"][i] == true, "inclusion proof " << i);
    }
    const std::size_t last = checked["consistency"].size() - 1;
    for (std::size_t i = 0; i < last; ++i) {
      CHECK_MESSAGE(checked["consistency"][i] == true, "consistency proof " << i);
    }
    CHECK(checked["consistency"][last] == false);
  }

  TEST_CASE("proof parameters are checked") {
    DevServer server;
    REQUIRE(server.Start());
    auto client = server.Client();
    REQUIRE(StatusOf(WriteSecret(*client, "proof/p", {{"v", 1}})) == 200);

    struct Case {
      std::string target;
      std::string named;
    };
    const std::vector<Case> cases = {
        {"/v1/sys/audit/proof/inclusion?tree_size=2", "index"},
        {"/v1/sys/audit/proof/inclusion?index=5&tree_size=2", "index"},
        {"/v1/sys/audit/proof/inclusion?index=x", "index"},
        {"/v1/sys/audit/proof/inclusion?index=0&tree_size=999999", "tree_size"},
        {"/v1/sys/audit/proof/consistency?first=0&second=2", "first"},
        {"/v1/sys/audit/proof/consistency?first=3&second=2", "first"},
        {"/v1/sys/audit/proof/consistency?second=2", "first"},
        {"/v1/sys/audit/proof/consistency?first=1&second=-1", "second"},
    };
    for (const Case& c : cases) {
      const auto reply = client->Get(c.target);
      CHECK_MESSAGE(StatusOf(reply) == 400, c.target);
      CHECK_MESSAGE(BodyOf(reply).dump().find("\\\"" + c.named + "\\\"") != std::string::npos,
                    c.target << ": " << BodyOf(reply).dump());
    }
    CHECK(StatusOf(server.AnonymousClient()->Get("/v1/sys/audit/checkpoint")) == 403);
    CHECK(StatusOf(client->Delete("/v1/sys/audit/checkpoint")) == 405);
  }

  TEST_CASE("shutdown signs a checkpoint of every record") {
    DevServer server;
    REQUIRE(server.Start());
    auto client = server.Client();
    REQUIRE(StatusOf(WriteSecret(*client, "proof/last", {{"v", 1}})) == 200);
    REQUIRE(server.Stop() == 0);

    Database db(server.db_path());
    const std::vector<json> records = AuditRecords(db);
    const auto checkpoints =
        db.Rows("SELECT key, value FROM kv WHERE key >= 'sys/audit/checkpoint/' AND "
                "key < 'sys/audit/checkpoint0' ORDER BY key");
    REQUIRE_FALSE(checkpoints.empty());
    const std::string& last = checkpoints.back().second;
    CHECK(last.find("\n" + std::to_string(records.size()) + "\n") != std::string::npos);
  }
}

}  // namespace kw::e2e
