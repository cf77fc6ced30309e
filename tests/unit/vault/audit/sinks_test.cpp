#include "vault/audit/sinks.hpp"

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "tests/unit/vault/audit/audit_test_support.hpp"
#include "vault/audit/audit_record.hpp"

namespace kw::vault::audit {
namespace {

using testing::AuditHarness;
using testing::MakeEntry;
using testing::ReadFileBytes;

namespace fs = std::filesystem;

SinkConfig FileConfig(const fs::path& path, bool required = true) {
  SinkConfig config;
  config.name = "audit-file";
  config.type = "file";
  config.path = path.string();
  config.required = required;
  return config;
}

SinkConfig SyslogConfig(const fs::path& socket, bool required = true) {
  SinkConfig config;
  config.name = "audit-syslog";
  config.type = "syslog";
  config.path = socket.string();
  config.required = required;
  config.facility = "local3";
  config.tag = "keyward-test";
  return config;
}

std::vector<std::string> Lines(const fs::path& path) {
  std::vector<std::string> lines;
  std::istringstream text(ReadFileBytes(path));
  for (std::string line; std::getline(text, line);) lines.push_back(line);
  return lines;
}

// Returns every stored record's bytes, in sequence order.
std::vector<std::string> StoredRecords(storage::Storage& storage) {
  auto entries = storage.Scan(detail::kLogPrefix, "", 100000);
  REQUIRE(entries.has_value());
  std::vector<std::string> records;
  for (const auto& entry : *entries) records.emplace_back(AsText(entry.value));
  return records;
}

// A signed-note shaped checkpoint for `size`; the sinks read only its size line.
std::string FakeNote(std::uint64_t size) {
  return "keyward.test\n" + std::to_string(size) + "\nAAAA\n\n— keyward.test AAAAAAAA\n";
}

std::string CheckpointLineOf(std::uint64_t size) {
  return detail::CanonicalJson({{"checkpoint", FakeNote(size)}});
}

// The harness plus helpers that commit entries and hand the records to a sink set.
struct SinkHarness {
  AuditHarness audit;
  testing::TempDir dir;
  SystemClock clock;

  fs::path File(const std::string& name) const { return dir.path() / name; }

  // Commits entry `n` and returns its appended record.
  AppendedRecord Commit(const AuditEntry& entry) {
    storage::WriteBatch batch;
    std::shared_ptr<AppendedRecord> appended;
    REQUIRE(audit.log().Attach(entry, batch, appended).has_value());
    REQUIRE(audit.storage().Commit(std::move(batch)).has_value());
    REQUIRE(appended != nullptr);
    REQUIRE(appended->sequence > 0);
    return *appended;
  }

  Status CommitAndDeliver(SinkSet& sinks, int n) {
    const AppendedRecord record = Commit(MakeEntry(n));
    return sinks.Deliver(record.sequence, record.canonical);
  }

  std::unique_ptr<SinkSet> Open(const std::vector<SinkConfig>& configs) {
    auto sinks = SinkSet::Open(configs, audit.storage(), clock);
    REQUIRE_MESSAGE(sinks.has_value(), kw::testing::ErrorText(sinks.error()));
    return std::move(*sinks);
  }

  void PutCheckpoint(std::uint64_t size) {
    const std::string note = FakeNote(size);
    storage::WriteBatch batch;
    batch.Put(detail::CheckpointKey(size), Bytes(note.begin(), note.end()));
    REQUIRE(audit.storage().Commit(std::move(batch)).has_value());
  }
};

// A Unix datagram socket bound in a temporary directory: the test's own syslog receiver.
class SyslogReceiver {
 public:
  explicit SyslogReceiver(fs::path path) : path_(std::move(path)) { Bind(); }
  ~SyslogReceiver() { Close(); }

  void Bind() {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    REQUIRE(path_.string().size() < sizeof address.sun_path);
    std::memcpy(address.sun_path, path_.c_str(), path_.string().size());
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    timeval timeout{2, 0};
    REQUIRE(::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) == 0);
    int buffer = 1 << 20;
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer);
  }

  // Closes the socket and removes its file, as a stopped syslog daemon leaves it.
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    std::error_code ignored;
    fs::remove(path_, ignored);
  }

  // Returns the next datagram; empty after two seconds without one.
  std::string Receive() {
    std::string message(256 * 1024, '\0');
    const ssize_t received = ::recv(fd_, message.data(), message.size(), 0);
    if (received < 0) return {};
    message.resize(static_cast<std::size_t>(received));
    return message;
  }

 private:
  fs::path path_;
  int fd_ = -1;
};

// The RFC 5424 header keyward writes: PRI local3.info = 19 * 8 + 6 = 158, version 1,
// a UTC timestamp with microseconds, host, APP-NAME, PROCID, MSGID and no structured data.
const std::regex kSyslogHeader(
    R"(^<158>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z [!-~]+ )"
    R"(keyward-test (\d+) (record|checkpoint) - )");

// Splits a syslog datagram into its MSGID and message; fails the test on a malformed header.
std::pair<std::string, std::string> ParseSyslog(const std::string& datagram) {
  std::smatch match;
  REQUIRE_MESSAGE(std::regex_search(datagram, match, kSyslogHeader), datagram.substr(0, 200));
  CHECK(match[1].str() == std::to_string(::getpid()));
  return {match[2].str(), datagram.substr(static_cast<std::size_t>(match.length(0)))};
}

TEST_SUITE("vault/audit/sinks") {
  TEST_CASE("file sink lines equal database records") {
    SinkHarness h;
    const fs::path path = h.File("audit.log");
    auto sinks = h.Open({FileConfig(path)});
    for (int n = 1; n <= 5; ++n) CHECK(h.CommitAndDeliver(*sinks, n).has_value());
    CHECK(sinks->DeliverCheckpoint(5, FakeNote(5)).has_value());
    CHECK(h.CommitAndDeliver(*sinks, 6).has_value());

    std::vector<std::string> expected = StoredRecords(h.audit.storage());
    REQUIRE(expected.size() == 6);
    expected.insert(expected.begin() + 5, CheckpointLineOf(5));
    CHECK(Lines(path) == expected);
    CHECK((fs::status(path).permissions() & fs::perms::all) ==
          (fs::perms::owner_read | fs::perms::owner_write));

    const std::vector<SinkStatus> health = sinks->Health();
    REQUIRE(health.size() == 1);
    CHECK(health[0].name == "audit-file");
    CHECK(health[0].type == "file");
    CHECK(health[0].healthy);
    CHECK(health[0].next_sequence == 7);
    CHECK(health[0].error.empty());
  }

  TEST_CASE("file sink replays stored records at start") {
    SinkHarness h;
    for (int n = 1; n <= 4; ++n) h.Commit(MakeEntry(n));
    h.PutCheckpoint(2);
    const fs::path path = h.File("audit.log");
    {
      auto sinks = h.Open({FileConfig(path)});
      std::vector<std::string> expected = StoredRecords(h.audit.storage());
      expected.insert(expected.begin() + 2, CheckpointLineOf(2));
      CHECK(Lines(path) == expected);
    }
    // A restart finds the file up to date and writes nothing twice.
    const std::string before = ReadFileBytes(path);
    auto reopened = h.Open({FileConfig(path)});
    CHECK(ReadFileBytes(path) == before);
    CHECK(reopened->Health()[0].next_sequence == 5);
  }

  TEST_CASE("torn tail truncated at open") {
    SinkHarness h;
    const fs::path path = h.File("audit.log");
    {
      auto sinks = h.Open({FileConfig(path)});
      for (int n = 1; n <= 3; ++n) REQUIRE(h.CommitAndDeliver(*sinks, n).has_value());
    }
    // A crash between commit and sink write: record 4 is in the database only, and the file
    // ends with half of a line.
    h.Commit(MakeEntry(4));
    {
      std::ofstream torn(path, std::ios::binary | std::ios::app);
      torn << R"({"accessor":"accessor-4","client_addr)";
    }
    auto sinks = h.Open({FileConfig(path)});
    CHECK(Lines(path) == StoredRecords(h.audit.storage()));
    CHECK(ReadFileBytes(path).back() == '\n');
    CHECK(sinks->Health()[0].next_sequence == 5);
  }

  TEST_CASE("catch-up after a gap writes missed records") {
    SinkHarness h;
    const fs::path path = h.File("audit.log");
    auto sinks = h.Open({FileConfig(path)});
    REQUIRE(h.CommitAndDeliver(*sinks, 1).has_value());
    // Records the server commits itself (token sweeps, lease revocations) reach no Deliver.
    for (int n = 2; n <= 4; ++n) h.Commit(MakeEntry(n));
    h.PutCheckpoint(3);
    REQUIRE(h.CommitAndDeliver(*sinks, 5).has_value());

    std::vector<std::string> expected = StoredRecords(h.audit.storage());
    REQUIRE(expected.size() == 5);
    expected.insert(expected.begin() + 3, CheckpointLineOf(3));
    CHECK(Lines(path) == expected);

    // An old record delivered late is not written again.
    const std::string before = ReadFileBytes(path);
    CHECK(sinks->Deliver(2, expected[1]).has_value());
    CHECK(ReadFileBytes(path) == before);
  }

  TEST_CASE("checkpoint after later records is left out") {
    SinkHarness h;
    const fs::path path = h.File("audit.log");
    auto sinks = h.Open({FileConfig(path)});
    for (int n = 1; n <= 3; ++n) REQUIRE(h.CommitAndDeliver(*sinks, n).has_value());
    CHECK(sinks->DeliverCheckpoint(2, FakeNote(2)).has_value());
    CHECK(Lines(path) == StoredRecords(h.audit.storage()));

    // A checkpoint for records not yet written catches the sink up first.
    for (int n = 4; n <= 5; ++n) h.Commit(MakeEntry(n));
    CHECK(sinks->DeliverCheckpoint(5, FakeNote(5)).has_value());
    CHECK(sinks->DeliverCheckpoint(5, FakeNote(5)).has_value());
    std::vector<std::string> expected = StoredRecords(h.audit.storage());
    expected.push_back(CheckpointLineOf(5));
    CHECK(Lines(path) == expected);
  }

  TEST_CASE("reopen after rename writes a new file") {
    SinkHarness h;
    const fs::path path = h.File("audit.log");
    const fs::path rotated = h.File("audit.log.1");
    auto sinks = h.Open({FileConfig(path)});
    for (int n = 1; n <= 2; ++n) REQUIRE(h.CommitAndDeliver(*sinks, n).has_value());
    fs::rename(path, rotated);

    sinks->Reopen();
    CHECK(fs::exists(path));
    CHECK(fs::file_size(path) == 0);
    REQUIRE(h.CommitAndDeliver(*sinks, 3).has_value());

    const std::vector<std::string> stored = StoredRecords(h.audit.storage());
    CHECK(Lines(rotated) == std::vector<std::string>(stored.begin(), stored.begin() + 2));
    CHECK(Lines(path) == std::vector<std::string>{stored[2]});
    CHECK(sinks->Health()[0].healthy);
  }

  TEST_CASE("deleted file fails the next write") {
    SinkHarness h;
    const fs::path path = h.File("audit.log");
    auto sinks = h.Open({FileConfig(path)});
    for (int n = 1; n <= 2; ++n) REQUIRE(h.CommitAndDeliver(*sinks, n).has_value());
    REQUIRE(fs::remove(path));

    const Status delivered = h.CommitAndDeliver(*sinks, 3);
    REQUIRE_FALSE(delivered.has_value());
    CHECK(delivered.error().code() == Code::kUnavailable);
    CHECK(delivered.error().message() == "audit sink \"audit-file\" failed: " + path.string() +
                                             " was deleted; requests are refused until it "
                                             "recovers");
    CHECK_FALSE(sinks->Health()[0].healthy);
    CHECK_FALSE(sinks->CheckRequired().has_value());
  }

  TEST_CASE("renamed file keeps receiving writes") {
    SinkHarness h;
    const fs::path path = h.File("audit.log");
    const fs::path rotated = h.File("audit.log.1");
    auto sinks = h.Open({FileConfig(path)});
    REQUIRE(h.CommitAndDeliver(*sinks, 1).has_value());

    // logrotate renames the file and, with "create", puts an empty one at the path; the sink
    // keeps writing to the renamed file until SIGHUP.
    fs::rename(path, rotated);
    REQUIRE(h.CommitAndDeliver(*sinks, 2).has_value());
    { std::ofstream created(path, std::ios::binary); }
    REQUIRE(h.CommitAndDeliver(*sinks, 3).has_value());

    CHECK(Lines(rotated) == StoredRecords(h.audit.storage()));
    CHECK(fs::file_size(path) == 0);
    CHECK(sinks->Health()[0].healthy);
    CHECK(sinks->CheckRequired().has_value());
  }

  TEST_CASE("recovery after deleted directory rewrites from record 1") {
    SinkHarness h;
    const fs::path directory = h.File("logs");
    fs::create_directories(directory);
    const fs::path path = directory / "audit.log";
    auto sinks = h.Open({FileConfig(path)});
    for (int n = 1; n <= 3; ++n) REQUIRE(h.CommitAndDeliver(*sinks, n).has_value());
    h.PutCheckpoint(2);
    REQUIRE(sinks->DeliverCheckpoint(3, FakeNote(3)).has_value());
    h.PutCheckpoint(3);

    REQUIRE(fs::remove_all(directory) == 2);
    const Status delivered = h.CommitAndDeliver(*sinks, 4);
    REQUIRE_FALSE(delivered.has_value());
    CHECK(delivered.error().message().starts_with("audit sink \"audit-file\" failed: " +
                                                  path.string() + " was deleted"));

    // While the directory is missing, recovery fails on open.
    std::this_thread::sleep_for(kSinkRecoveryInterval + std::chrono::milliseconds(100));
    const Status missing = sinks->CheckRequired();
    REQUIRE_FALSE(missing.has_value());
    CHECK(missing.error().message().starts_with("audit sink \"audit-file\" failed: open " +
                                                path.string()));
    CHECK_FALSE(sinks->Health()[0].healthy);

    // Record 5 arrives while the sink is failed. The new file contains every stored record from
    // record 1 and each checkpoint after its record, not only the records the sink missed.
    CHECK_FALSE(h.CommitAndDeliver(*sinks, 5).has_value());
    fs::create_directories(directory);
    std::this_thread::sleep_for(kSinkRecoveryInterval + std::chrono::milliseconds(100));
    REQUIRE(sinks->CheckRequired().has_value());
    CHECK(sinks->Health()[0].healthy);
    CHECK(sinks->Health()[0].next_sequence == 6);

    std::vector<std::string> expected = StoredRecords(h.audit.storage());
    REQUIRE(expected.size() == 5);
    expected.insert(expected.begin() + 3, CheckpointLineOf(3));
    expected.insert(expected.begin() + 2, CheckpointLineOf(2));
    CHECK(Lines(path) == expected);

    REQUIRE(h.CommitAndDeliver(*sinks, 6).has_value());
    CHECK(Lines(path).back() == StoredRecords(h.audit.storage()).back());
  }

  TEST_CASE("reopen after deleted file rewrites from record 1") {
    SinkHarness h;
    const fs::path path = h.File("audit.log");
    auto sinks = h.Open({FileConfig(path)});
    for (int n = 1; n <= 3; ++n) REQUIRE(h.CommitAndDeliver(*sinks, n).has_value());
    REQUIRE(sinks->DeliverCheckpoint(3, FakeNote(3)).has_value());
    h.PutCheckpoint(3);

    // SIGHUP before any write noticed the deletion.
    REQUIRE(fs::remove(path));
    sinks->Reopen();
    CHECK(sinks->Health()[0].healthy);
    std::vector<std::string> expected = StoredRecords(h.audit.storage());
    expected.push_back(CheckpointLineOf(3));
    CHECK(Lines(path) == expected);
  }

  TEST_CASE("failed file write leaves no partial line") {
    SinkHarness h;
    const fs::path path = h.File("audit.log");
    auto sinks = h.Open({FileConfig(path)});
    REQUIRE(h.CommitAndDeliver(*sinks, 1).has_value());
    const AppendedRecord second = h.Commit(MakeEntry(2));
    const std::string before = ReadFileBytes(path);

    // A file size limit lets the write store 10 bytes of the line, as a full disk would.
    // The database is not written while the limit holds.
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit original{};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &original) == 0);
    rlimit limited = original;
    limited.rlim_cur = before.size() + 10;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &limited) == 0);
    const Status delivered = sinks->Deliver(second.sequence, second.canonical);
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &original) == 0);

    REQUIRE_FALSE(delivered.has_value());
    CHECK(delivered.error().code() == Code::kUnavailable);
    CHECK(delivered.error().message().find("audit sink \"audit-file\" failed: write " +
                                           path.string() + ": wrote only 10 of") == 0);
    CHECK(delivered.error().message().ends_with("requests are refused until it recovers"));
    CHECK(ReadFileBytes(path) == before);
    CHECK_FALSE(sinks->Health()[0].healthy);
    CHECK_FALSE(sinks->Health()[0].error.empty());

    // Recovery waits for the retry interval, then catches the file up.
    const Status refused = sinks->CheckRequired();
    REQUIRE_FALSE(refused.has_value());
    CHECK(refused.error().code() == Code::kUnavailable);
    std::this_thread::sleep_for(kSinkRecoveryInterval + std::chrono::milliseconds(100));
    CHECK(sinks->CheckRequired().has_value());
    CHECK(sinks->Health()[0].healthy);
    CHECK(Lines(path) == StoredRecords(h.audit.storage()));
  }

  TEST_CASE("syslog sink sends RFC 5424 messages") {
    SinkHarness h;
    SyslogReceiver receiver(h.File("log.sock"));
    auto sinks = h.Open({SyslogConfig(h.File("log.sock"))});
    REQUIRE(h.CommitAndDeliver(*sinks, 1).has_value());
    CHECK(sinks->DeliverCheckpoint(1, FakeNote(1)).has_value());

    const auto [record_id, record] = ParseSyslog(receiver.Receive());
    CHECK(record_id == "record");
    CHECK(record == StoredRecords(h.audit.storage())[0]);
    const auto [checkpoint_id, checkpoint] = ParseSyslog(receiver.Receive());
    CHECK(checkpoint_id == "checkpoint");
    CHECK(checkpoint == CheckpointLineOf(1));
  }

  TEST_CASE("syslog sink truncates a huge record") {
    SinkHarness h;
    SyslogReceiver receiver(h.File("log.sock"));
    auto sinks = h.Open({SyslogConfig(h.File("log.sock"))});
    AuditEntry huge = MakeEntry(1);
    huge.error = std::string(kMaxSyslogRecordBytes + 1, 'e');  // error text is stored in clear
    const AppendedRecord record = h.Commit(huge);
    REQUIRE(record.canonical.size() > kMaxSyslogRecordBytes);
    REQUIRE(sinks->Deliver(record.sequence, record.canonical).has_value());

    const auto [id, message] = ParseSyslog(receiver.Receive());
    CHECK(id == "record");
    const nlohmann::json expected = {{"seq", record.sequence},
                                     {"sha256", ToHex(Sha256(AsBytes(record.canonical)))},
                                     {"truncated", true}};
    CHECK(message == detail::CanonicalJson(expected));
  }

  TEST_CASE("syslog sink fails on a closed socket and recovers") {
    SinkHarness h;
    SyslogReceiver receiver(h.File("log.sock"));
    auto sinks = h.Open({SyslogConfig(h.File("log.sock"))});
    REQUIRE(h.CommitAndDeliver(*sinks, 1).has_value());
    CHECK(ParseSyslog(receiver.Receive()).second == StoredRecords(h.audit.storage())[0]);

    receiver.Close();
    const Status delivered = h.CommitAndDeliver(*sinks, 2);
    REQUIRE_FALSE(delivered.has_value());
    CHECK(delivered.error().code() == Code::kUnavailable);
    CHECK(delivered.error().message().starts_with("audit sink \"audit-syslog\" failed: send to " +
                                                  h.File("log.sock").string()));
    CHECK_FALSE(sinks->CheckRequired().has_value());
    CHECK_FALSE(sinks->Health()[0].healthy);

    // Record 3 arrives while the sink is failed; recovery replays 2 and 3 from the database.
    CHECK_FALSE(h.CommitAndDeliver(*sinks, 3).has_value());
    receiver.Bind();
    std::this_thread::sleep_for(kSinkRecoveryInterval + std::chrono::milliseconds(100));
    REQUIRE(sinks->CheckRequired().has_value());
    const std::vector<std::string> stored = StoredRecords(h.audit.storage());
    CHECK(ParseSyslog(receiver.Receive()).second == stored[1]);
    CHECK(ParseSyslog(receiver.Receive()).second == stored[2]);
    CHECK(sinks->Health()[0].next_sequence == 4);
  }

  TEST_CASE("syslog sink starts after the stored records") {
    SinkHarness h;
    for (int n = 1; n <= 3; ++n) h.Commit(MakeEntry(n));
    SyslogReceiver receiver(h.File("log.sock"));
    auto sinks = h.Open({SyslogConfig(h.File("log.sock"))});
    CHECK(sinks->Health()[0].next_sequence == 4);
    REQUIRE(h.CommitAndDeliver(*sinks, 4).has_value());
    CHECK(ParseSyslog(receiver.Receive()).second == StoredRecords(h.audit.storage())[3]);
  }

  TEST_CASE("best-effort sink failure refuses nothing") {
    SinkHarness h;
    auto sinks = h.Open({SyslogConfig(h.File("absent.sock"), /*required=*/false)});
    const std::vector<SinkStatus> health = sinks->Health();
    REQUIRE(health.size() == 1);
    CHECK_FALSE(health[0].healthy);
    CHECK_FALSE(health[0].required);
    CHECK(health[0].error.find("connect to") == 0);
    CHECK(sinks->CheckRequired().has_value());
    CHECK(h.CommitAndDeliver(*sinks, 1).has_value());
  }

  TEST_CASE("required sink that cannot open fails start") {
    SinkHarness h;
    auto sinks = SinkSet::Open({FileConfig(h.File("missing-dir") / "audit.log")},
                               h.audit.storage(), h.clock);
    REQUIRE_FALSE(sinks.has_value());
    CHECK(sinks.error().code() == Code::kUnavailable);
    CHECK(sinks.error().message().starts_with("audit sink \"audit-file\" (file): open "));
  }

  TEST_CASE("file ending after the database is rejected") {
    SinkHarness h;
    h.Commit(MakeEntry(1));
    const fs::path path = h.File("audit.log");
    {
      std::ofstream other(path, std::ios::binary);
      other << R"({"prev_hash":"x","seq":9})" << "\n";
    }
    auto sinks = SinkSet::Open({FileConfig(path)}, h.audit.storage(), h.clock);
    REQUIRE_FALSE(sinks.has_value());
    CHECK(sinks.error().message().find("ends at record 9, after the last record in the "
                                       "database (1)") != std::string::npos);

    std::ofstream garbage(path, std::ios::binary | std::ios::trunc);
    garbage << "not json\n";
    garbage.close();
    sinks = SinkSet::Open({FileConfig(path)}, h.audit.storage(), h.clock);
    REQUIRE_FALSE(sinks.has_value());
    CHECK(sinks.error().message().find("neither an audit record nor a checkpoint") !=
          std::string::npos);
  }

  TEST_CASE("sink config is validated") {
    SystemClock clock;
    SinkConfig relative = FileConfig("audit.log");
    CHECK(MakeSink(relative, clock).error().code() == Code::kInvalidArgument);
    SinkConfig unknown = FileConfig("/tmp/x");
    unknown.type = "kafka";
    CHECK(MakeSink(unknown, clock).error().message().find("unknown type \"kafka\"") !=
          std::string::npos);
    SinkConfig facility = SyslogConfig("/tmp/x.sock");
    facility.facility = "local9";
    CHECK(MakeSink(facility, clock).error().message().find("facility \"local9\"") !=
          std::string::npos);
    SinkConfig tag = SyslogConfig("/tmp/x.sock");
    tag.tag = "two words";
    CHECK_FALSE(MakeSink(tag, clock).has_value());
    CHECK(SyslogFacilityCode("auth") == 4);
    CHECK(SyslogFacilityCode("local7") == 23);
    CHECK_FALSE(IsValidSyslogTag(std::string(49, 'a')));
  }
}

}  // namespace
}  // namespace kw::vault::audit
