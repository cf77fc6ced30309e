// The audit CLI through the real binary: checkpoints saved by an auditor, an export, offline
// verification with the server stopped, and five tamperings of the exported file, each rejected
// with the record it concerns. The file sink's file verifies offline too.
#include <doctest/doctest.h>

#include <openssl/evp.h>

#include <fstream>
#include <sstream>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kSoftHsmModule = "/usr/lib/softhsm/libsofthsm2.so";

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<std::string> ReadLines(const fs::path& path) {
  std::vector<std::string> lines;
  std::istringstream in(ReadText(path));
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

void WriteLines(const fs::path& path, const std::vector<std::string>& lines) {
  std::string text;
  for (const std::string& line : lines) text += line + "\n";
  WriteTextFile(path, text);
}

// Lower-case hex SHA-256, as a record's prev_hash names its predecessor.
std::string Sha256Hex(const std::string& bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  REQUIRE(EVP_Digest(bytes.data(), bytes.size(), digest, &size, EVP_sha256(), nullptr) == 1);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < size; ++i) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 0x0f]);
  }
  return hex;
}

// The stored form of a record: nlohmann's dump with sorted keys, no spaces, raw UTF-8.
std::string Canonical(const json& record) {
  return record.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Returns the tree size a signed checkpoint note names (its second line).
std::uint64_t SizeOf(const std::string& note) {
  const std::size_t first = note.find('\n');
  REQUIRE(first != std::string::npos);
  return std::stoull(note.substr(first + 1, note.find('\n', first + 1) - first - 1));
}

bool IsCheckpointLine(const std::string& line) { return line.starts_with("{\"checkpoint\":"); }

// Returns the index in `lines` of record `sequence`.
std::size_t LineOf(const std::vector<std::string>& lines, std::uint64_t sequence) {
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (IsCheckpointLine(lines[i])) continue;
    if (json::parse(lines[i]).value("seq", std::uint64_t{0}) == sequence) return i;
  }
  FAIL("record " << sequence << " not in the export");
  return 0;
}

// Writes, reads and misses under secret/data/<prefix>/.
void Traffic(DevServer& server, const std::string& prefix, int count) {
  auto client = server.Client();
  for (int i = 0; i < count; ++i) {
    const std::string path = prefix + "/s" + std::to_string(i);
    REQUIRE(StatusOf(WriteSecret(*client, path, {{"value", "v" + std::to_string(i)}})) == 200);
    CHECK(StatusOf(client->Get("/v1/secret/data/" + path)) == 200);
  }
  CHECK(StatusOf(client->Get("/v1/secret/data/" + prefix + "/missing")) == 404);
}

// Signs a checkpoint now instead of waiting for the checkpoint interval.
void SignCheckpointNow(httplib::Client& client) {
  auto reply = client.Post("/v1/sys/audit/checkpoint", "", "application/json");
  REQUIRE_MESSAGE(StatusOf(reply) == 200, BodyOf(reply).dump());
}

ExitResult Cli(const std::string& url, const std::string& token, std::vector<std::string> args) {
  args.push_back("-address=" + url);
  args.push_back("-token=" + token);
  return RunToExit(args, {});
}

// Files an auditor keeps: two saved checkpoints, the proof between them, the key, an export.
struct AuditorFiles {
  fs::path early;
  fs::path latest;
  fs::path proof;
  fs::path vkey;
  fs::path log;
};

ExitResult VerifyOffline(const fs::path& log, const AuditorFiles& files, const fs::path& checkpoint,
                         std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {
      "audit",       "verify",           "-log", log.string(), "-key", "@" + files.vkey.string(),
      "-checkpoint", checkpoint.string()};
  args.insert(args.end(), extra.begin(), extra.end());
  return RunToExit(args, {"KEYWARD_ADDR=", "KEYWARD_TOKEN=", "VAULT_ADDR=", "VAULT_TOKEN="});
}

// Starts a server, makes traffic around two saved checkpoints, exports the log and stops the
// server, so that everything afterwards runs offline.
AuditorFiles PrepareExport(DevServer& server, const fs::path& dir) {
  AuditorFiles files{dir / "early.ckpt", dir / "latest.ckpt", dir / "proof.json",
                     dir / "audit.vkey", dir / "export.jsonl"};
  REQUIRE(server.Start());
  auto client = server.Client();
  const std::string url = server.url();
  const std::string token = server.token();

  Traffic(server, "early", 6);
  SignCheckpointNow(*client);
  const ExitResult early = Cli(url, token, {"audit", "checkpoint", "-o", files.early.string()});
  REQUIRE_MESSAGE(early.exit_code == 0, early.err);
  CHECK(Contains(early.out, "Saved the checkpoint for size"));

  Traffic(server, "late", 10);
  SignCheckpointNow(*client);
  const ExitResult latest = Cli(url, token, {"audit", "checkpoint", "-o", files.latest.string()});
  REQUIRE_MESSAGE(latest.exit_code == 0, latest.err);
  const ExitResult key = Cli(url, token, {"audit", "public-key", "-o", files.vkey.string()});
  REQUIRE_MESSAGE(key.exit_code == 0, key.err);

  const std::uint64_t first = SizeOf(ReadText(files.early));
  const std::uint64_t second = SizeOf(ReadText(files.latest));
  REQUIRE(first >= 10);
  REQUIRE(first < second);
  const ExitResult proof = Cli(url, token,
                               {"audit", "proof", "consistency", "-first", std::to_string(first),
                                "-second", std::to_string(second), "-o", files.proof.string()});
  REQUIRE_MESSAGE(proof.exit_code == 0, proof.err);

  const ExitResult exported = Cli(url, token, {"audit", "export", "-o", files.log.string()});
  REQUIRE_MESSAGE(exported.exit_code == 0, exported.err);
  CHECK(Contains(exported.out, "Exported "));
  CHECK_FALSE(fs::exists(files.log.string() + ".tmp"));
  CHECK((fs::status(files.log).permissions() & fs::perms::others_read) == fs::perms::none);

  REQUIRE(server.Stop() == 0);
  return files;
}

}  // namespace

TEST_SUITE("e2e/audit-offline") {
  TEST_CASE("exported log verifies offline") {
    DevServer server;
    TempDir dir;
    const AuditorFiles files = PrepareExport(server, dir.path());
    const std::uint64_t latest_size = SizeOf(ReadText(files.latest));

    // The export contains each stored record once, in order, and the checkpoint lines.
    const std::vector<std::string> lines = ReadLines(files.log);
    std::uint64_t expected = 1;
    int checkpoint_lines = 0;
    for (const std::string& line : lines) {
      if (IsCheckpointLine(line)) {
        ++checkpoint_lines;
        continue;
      }
      CHECK(json::parse(line)["seq"] == expected);
      ++expected;
    }
    CHECK(expected - 1 >= latest_size);
    CHECK(checkpoint_lines >= 2);

    const ExitResult verified =
        VerifyOffline(files.log, files, files.latest,
                      {"-old-checkpoint", files.early.string(), "-proof", files.proof.string()});
    CHECK_MESSAGE(verified.exit_code == 0, verified.err);
    CHECK(Contains(verified.out, "Verified                true"));
    CHECK(Contains(verified.out, "Records checked         " + std::to_string(expected - 1)));
    CHECK(Contains(verified.out, "consistency proof verified"));

    // The key given inline rather than as a file.
    const std::string vkey = ReadLines(files.vkey).at(0);
    const ExitResult inline_key = RunToExit({"audit", "verify", "-log", files.log.string(), "-key",
                                             vkey, "-checkpoint", files.early.string()},
                                            {});
    CHECK_MESSAGE(inline_key.exit_code == 0, inline_key.err);

    // A proof whose first hash is flipped fails, and so does the pair of checkpoints swapped.
    json proof = json::parse(ReadText(files.proof));
    std::string hash = proof["data"]["proof"][0];
    hash[0] = hash[0] == 'A' ? 'B' : 'A';
    proof["data"]["proof"][0] = hash;
    WriteTextFile(dir.path() / "bad-proof.json", proof.dump());
    const ExitResult bad_proof = VerifyOffline(files.log, files, files.latest,
                                               {"-old-checkpoint", files.early.string(), "-proof",
                                                (dir.path() / "bad-proof.json").string()});
    CHECK(bad_proof.exit_code == 1);
    CHECK(Contains(bad_proof.err, "consistency proof"));
    const ExitResult swapped =
        VerifyOffline(files.log, files, files.early, {"-old-checkpoint", files.latest.string()});
    CHECK(swapped.exit_code == 1);
    CHECK(Contains(swapped.err, "swap the two files"));
  }

  TEST_CASE("tampered exports are rejected offline") {
    DevServer server;
    TempDir dir;
    const AuditorFiles files = PrepareExport(server, dir.path());
    const std::vector<std::string> lines = ReadLines(files.log);
    const std::uint64_t early = SizeOf(ReadText(files.early));
    const std::uint64_t k = early / 2;
    const std::string k_text = std::to_string(k);
    const fs::path copy = dir.path() / "tampered.jsonl";

    // Each tampering is checked against the checkpoint saved early, before it happened.
    SUBCASE("one byte changed") {
      std::vector<std::string> tampered = lines;
      std::string& line = tampered[LineOf(tampered, k)];
      const std::size_t at = line.find("\"request_id\":\"") + 14;
      line[at] = line[at] == 'a' ? 'b' : 'a';
      WriteLines(copy, tampered);
      const ExitResult run = VerifyOffline(copy, files, files.early);
      CHECK(run.exit_code == 1);
      CHECK(Contains(run.err, "record " + std::to_string(k + 1) +
                                  ": previous hash mismatch (record " + k_text + " changed?)"));
    }
    SUBCASE("record deleted") {
      std::vector<std::string> tampered = lines;
      tampered.erase(tampered.begin() + static_cast<std::ptrdiff_t>(LineOf(tampered, k)));
      WriteLines(copy, tampered);
      const ExitResult run = VerifyOffline(copy, files, files.early);
      CHECK(run.exit_code == 1);
      CHECK(Contains(run.err, "record " + k_text + " missing"));
    }
    SUBCASE("two records reordered") {
      std::vector<std::string> tampered = lines;
      std::swap(tampered[LineOf(tampered, k)], tampered[LineOf(tampered, k + 1)]);
      WriteLines(copy, tampered);
      const ExitResult run = VerifyOffline(copy, files, files.early);
      CHECK(run.exit_code == 1);
      CHECK(Contains(run.err, "record " + k_text + " missing (record " + std::to_string(k + 1) +
                                  " follows record " + std::to_string(k - 1) + ")"));
    }
    SUBCASE("tail truncated") {
      std::vector<std::string> tampered(lines.begin(),
                                        lines.begin() + LineOf(lines, early - 3) + 1);
      WriteLines(copy, tampered);
      const ExitResult run = VerifyOffline(copy, files, files.early);
      CHECK(run.exit_code == 1);
      CHECK(Contains(run.err, "log ends after record " + std::to_string(early - 3) +
                                  " but the checkpoint for size " + std::to_string(early)));
      CHECK(Contains(run.err, "(records " + std::to_string(early - 2) + " to " +
                                  std::to_string(early) + " are missing)"));
    }
    SUBCASE("tail rewritten with a valid chain") {
      // From record early-2 on, every record gets another status and a prev_hash that links
      // it to the forged one before. The embedded checkpoints of that stretch are dropped.
      const std::size_t from = LineOf(lines, early - 2);
      std::vector<std::string> tampered(lines.begin(), lines.begin() + from);
      std::string previous = tampered.back();
      for (std::size_t i = from; i < lines.size(); ++i) {
        if (IsCheckpointLine(lines[i])) continue;
        json record = json::parse(lines[i]);
        record["status"] = 299;
        record["prev_hash"] = Sha256Hex(previous);
        tampered.push_back(Canonical(record));
        previous = tampered.back();
      }
      WriteLines(copy, tampered);
      const ExitResult run = VerifyOffline(copy, files, files.early);
      CHECK(run.exit_code == 1);
      CHECK(Contains(run.err, "do not match the checkpoint for size " + std::to_string(early)));
      CHECK(Contains(run.err, "a record in that range was changed or replaced"));

      // The later checkpoint covers the forged stretch too.
      const ExitResult latest = VerifyOffline(copy, files, files.latest);
      CHECK(latest.exit_code == 1);
    }
    SUBCASE("last line cut short") {
      std::string text = ReadText(files.log);
      text.resize(text.size() - 10);
      WriteTextFile(copy, text);
      const ExitResult run = VerifyOffline(copy, files, files.early);
      CHECK(run.exit_code == 1);
      CHECK(Contains(run.err, "line " + std::to_string(lines.size())));
    }
  }

  TEST_CASE("file sink verifies offline") {
    // A config-mode server whose audit log also goes to a JSON-lines file.
    TempDir dir;
    const fs::path softhsm_conf = dir.path() / "softhsm2.conf";
    const std::string softhsm_env = "SOFTHSM2_CONF=" + softhsm_conf.string();
    fs::create_directories(dir.path() / "tokens");
    WriteTextFile(softhsm_conf, "directories.tokendir = " + (dir.path() / "tokens").string() +
                                    "\nobjectstore.backend = file\nlog.level = ERROR\n");
    WriteTextFile(dir.path() / "pin", "e2e-user-pin-1234");
    const ExitResult token_init =
        RunProgram("/usr/bin/softhsm2-util",
                   {"--init-token", "--free", "--label", "e2e-sink", "--pin", "e2e-user-pin-1234",
                    "--so-pin", "e2e-so-pin-5678"},
                   {softhsm_env});
    REQUIRE_MESSAGE(token_init.exit_code == 0, token_init.out << token_init.err);
    const fs::path sink_file = dir.path() / "audit-sink.jsonl";
    const json config = {
        {"listener", {{"address", "127.0.0.1:0"}}},
        {"storage", {{"path", (dir.path() / "keyward.db").string()}}},
        {"hsm",
         {{"module", std::string(kSoftHsmModule)},
          {"token_label", "e2e-sink"},
          {"pin_file", (dir.path() / "pin").string()}}},
        {"audit",
         {{"sinks", {{{"name", "jsonl"}, {"type", "file"}, {"path", sink_file.string()}}}}}}};
    WriteTextFile(dir.path() / "keyward.json", config.dump(2));
    ServerProcess server({"server", "-config", (dir.path() / "keyward.json").string()},
                         {softhsm_env}, dir.path());
    REQUIRE(server.Start());

    auto init = MakeClient(server.port(), "")->Put("/v1/sys/init", "{}", "application/json");
    REQUIRE(StatusOf(init) == 200);
    const std::string root = BodyOf(init)["root_token"];
    auto client = MakeClient(server.port(), root);
    for (int i = 0; i < 8; ++i) {
      REQUIRE(StatusOf(WriteSecret(*client, "sink/s" + std::to_string(i), {{"v", i}})) == 200);
    }
    SignCheckpointNow(*client);
    const std::string url = "http://127.0.0.1:" + std::to_string(server.port());
    AuditorFiles files{dir.path() / "early.ckpt",
                       dir.path() / "latest.ckpt",
                       {},
                       dir.path() / "audit.vkey",
                       sink_file};
    REQUIRE(Cli(url, root, {"audit", "checkpoint", "-o", files.latest.string()}).exit_code == 0);
    REQUIRE(Cli(url, root, {"audit", "public-key", "-o", files.vkey.string()}).exit_code == 0);
    REQUIRE(server.Stop() == 0);

    const ExitResult verified = VerifyOffline(sink_file, files, files.latest);
    CHECK_MESSAGE(verified.exit_code == 0, verified.err);
    CHECK(Contains(verified.out, "Verified                true"));

    std::vector<std::string> tampered = ReadLines(sink_file);
    std::string& line = tampered[LineOf(tampered, 5)];
    line.replace(line.find("\"status\":200"), 12, "\"status\":201");
    const fs::path copy = dir.path() / "tampered.jsonl";
    WriteLines(copy, tampered);
    const ExitResult run = VerifyOffline(copy, files, files.latest);
    CHECK(run.exit_code == 1);
    CHECK(Contains(run.err, "record 6: previous hash mismatch (record 5 changed?)"));
  }

  TEST_CASE("checkpoint of another log is rejected") {
    DevServer server;
    TempDir dir;
    const AuditorFiles files = PrepareExport(server, dir.path());

    DevServer other;
    REQUIRE(other.Start());
    auto client = other.Client();
    SignCheckpointNow(*client);
    const fs::path foreign = dir.path() / "foreign.ckpt";
    const ExitResult saved =
        Cli(other.url(), other.token(), {"audit", "checkpoint", "-o", foreign.string()});
    REQUIRE_MESSAGE(saved.exit_code == 0, saved.err);
    REQUIRE(other.Stop() == 0);

    const ExitResult run = VerifyOffline(files.log, files, foreign);
    CHECK(run.exit_code == 1);
    CHECK(Contains(run.err, "is not the name of a known key"));
  }

  TEST_CASE("audit cli usage errors exit 2") {
    TempDir dir;
    const std::vector<std::vector<std::string>> usages = {
        {"audit", "verify", "-log", "x.jsonl"},
        {"audit", "verify", "-log", "x.jsonl", "-key", "k", "-checkpoint", "c", "-proof", "p"},
        {"audit", "verify", "-checkpoint", "c"},
        {"audit", "verify", "-unknown", "1"},
        {"audit", "export"},
        {"audit", "proof", "inclusion"},
        {"audit", "proof", "consistency", "-first", "x", "-second", "2"},
        {"audit", "query", "-format", "yaml"},
        {"audit", "query", "-limit", "0"},
        {"audit", "no-such-subcommand"},
        {"audit"},
    };
    for (const auto& args : usages) {
      CAPTURE(args);
      const ExitResult run = RunToExit(args, {});
      CHECK(run.exit_code == 2);
      CHECK(Contains(run.err, "usage error: "));
    }
    for (const std::string command : {"verify", "export", "checkpoint", "public-key", "query"}) {
      CAPTURE(command);
      const ExitResult help = RunToExit({"audit", command, "-help"}, {});
      CHECK(help.exit_code == 0);
      CHECK(Contains(help.out, "Example:\n  keyward audit " + command));
    }
    const ExitResult proof_help = RunToExit({"audit", "proof", "consistency", "-help"}, {});
    CHECK(proof_help.exit_code == 0);
    CHECK(Contains(proof_help.out, "Example:\n  keyward audit proof consistency"));

    // A missing file is an error (exit 1), not a usage error.
    const ExitResult missing =
        RunToExit({"audit", "verify", "-log", (dir.path() / "none.jsonl").string(), "-key",
                   "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
                   "-checkpoint", (dir.path() / "none.ckpt").string()},
                  {});
    CHECK(missing.exit_code == 1);
    CHECK(Contains(missing.err, "none.ckpt"));
  }

  TEST_CASE("audit query lists matching records") {
    DevServer server;
    REQUIRE(server.Start());
    Traffic(server, "query", 5);
    const ExitResult json_run = Cli(
        server.url(), server.token(),
        {"audit", "query", "-path-prefix", "secret/data/query/", "-limit", "3", "-format", "json"});
    REQUIRE_MESSAGE(json_run.exit_code == 0, json_run.err);
    const json records = json::parse(json_run.out);
    REQUIRE(records.is_array());
    CHECK(records.size() == 3);
    for (const json& record : records) {
      CHECK(record["path"].get<std::string>().starts_with("secret/data/query/"));
    }

    const ExitResult table =
        Cli(server.url(), server.token(), {"audit", "query", "-status", "404", "-format", "table"});
    REQUIRE_MESSAGE(table.exit_code == 0, table.err);
    CHECK(table.out.starts_with("SEQ"));
    CHECK(Contains(table.out, "secret/data/query/missing"));
    CHECK_FALSE(Contains(table.out, "secret/data/query/s0"));

    const ExitResult online = Cli(server.url(), server.token(), {"audit", "verify"});
    CHECK_MESSAGE(online.exit_code == 0, online.err);
    CHECK(Contains(online.out, "Verified              true"));
  }
}

}  // namespace kw::e2e
