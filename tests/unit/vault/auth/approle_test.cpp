#include "vault/auth/approle.hpp"

#include <doctest/doctest.h>

#include <atomic>

#include "fakes/forwarding_storage.hpp"
#include "vault/vault_test_env.hpp"

namespace {

using kw::Code;
using kw::SecretBuffer;
using kw::storage::WriteBatch;
using kw::vault::auth::AppRole;
using kw::vault::auth::AppRoleUpdate;
using kw::vault::auth::SecretIdRequest;

// Counts Get calls, so tests can compare the storage work of two logins.
class CountingStorage final : public kw::testing::ForwardingStorage {
 public:
  using ForwardingStorage::ForwardingStorage;
  kw::Result<std::optional<kw::Bytes>> Get(std::string_view key) override {
    gets.fetch_add(1);
    return inner_.Get(key);
  }
  std::atomic<int> gets{0};
};

struct Fixture {
  kw::testing::VaultTestEnv env;
  CountingStorage storage{*env.store};
  AppRole approle{storage, *env.barrier, env.clock};

  void Commit(WriteBatch batch) { REQUIRE(env.store->Commit(std::move(batch)).has_value()); }

  void WriteRole(const std::string& name, const AppRoleUpdate& update = {}) {
    WriteBatch batch;
    REQUIRE(approle.WriteRole(name, update, batch).has_value());
    Commit(std::move(batch));
  }

  std::string RoleId(const std::string& name) {
    auto role = approle.ReadRole(name);
    REQUIRE(role.has_value());
    return role->role_id;
  }

  kw::vault::auth::GeneratedSecretId Generate(const std::string& name,
                                              const SecretIdRequest& request = {}) {
    WriteBatch batch;
    auto generated = approle.GenerateSecretId(name, request, batch);
    REQUIRE(generated.has_value());
    Commit(std::move(batch));
    return std::move(*generated);
  }

  // Logs in and commits the batch on success.
  kw::Result<kw::vault::auth::TokenRequest> Login(std::string_view role_id,
                                                  const SecretBuffer& secret_id,
                                                  std::string_view address = "127.0.0.1") {
    WriteBatch batch;
    auto request = approle.Login(role_id, secret_id, address, batch);
    if (request) Commit(std::move(batch));
    return request;
  }
};

SecretBuffer Secret(std::string_view text) { return SecretBuffer::CopyFrom(text); }

void CheckInvalidLogin(const kw::Result<kw::vault::auth::TokenRequest>& result) {
  REQUIRE_FALSE(result.has_value());
  CHECK(result.error().code() == Code::kInvalidArgument);
  CHECK(result.error().message() == "invalid role ID or secret ID");
}

}  // namespace

TEST_SUITE("vault/auth/approle") {
  TEST_CASE("role names are validated and lower-cased") {
    auto name = AppRole::NormalizeRoleName("Web-App.v2_x");
    REQUIRE(name.has_value());
    CHECK(*name == "web-app.v2_x");
    for (std::string_view bad : {"", "-web", "web.", "a/b", "a b", "web\n"}) {
      CAPTURE(bad);
      auto rejected = AppRole::NormalizeRoleName(bad);
      REQUIRE_FALSE(rejected.has_value());
      CHECK(rejected.error().code() == Code::kInvalidArgument);
    }
    CHECK_FALSE(AppRole::NormalizeRoleName(std::string(4096, 'a')).has_value());
    CHECK(AppRole::NormalizeRoleName(std::string(4095, 'a')).has_value());
  }

  TEST_CASE("role create read update delete") {
    Fixture f;
    AppRoleUpdate create;
    create.token_policies = std::vector<std::string>{"Web", "db", "web", " "};
    create.token_ttl = 600;
    create.secret_id_num_uses = 3;
    f.WriteRole("web", create);

    auto role = f.approle.ReadRole("web");
    REQUIRE(role.has_value());
    CHECK(role->token_policies == std::vector<std::string>{"db", "web"});
    CHECK(role->token_ttl == 600);
    CHECK(role->secret_id_num_uses == 3);
    CHECK(role->bind_secret_id);
    CHECK(role->role_id.size() == 36);

    AppRoleUpdate change;
    change.token_max_ttl = 1200;
    f.WriteRole("web", change);
    auto updated = f.approle.ReadRole("web");
    REQUIRE(updated.has_value());
    CHECK(updated->token_ttl == 600);
    CHECK(updated->token_max_ttl == 1200);
    CHECK(updated->role_id == role->role_id);

    f.WriteRole("api");
    auto names = f.approle.ListRoles();
    REQUIRE(names.has_value());
    CHECK(*names == std::vector<std::string>{"api", "web"});

    WriteBatch batch;
    REQUIRE(f.approle.DeleteRole("web", batch).has_value());
    f.Commit(std::move(batch));
    auto gone = f.approle.ReadRole("web");
    REQUIRE_FALSE(gone.has_value());
    CHECK(gone.error().code() == Code::kNotFound);
    WriteBatch again;
    auto missing = f.approle.DeleteRole("web", again);
    REQUIRE_FALSE(missing.has_value());
    CHECK(missing.error().code() == Code::kNotFound);
  }

  TEST_CASE("role settings are checked") {
    Fixture f;
    WriteBatch batch;
    AppRoleUpdate ttl;
    ttl.token_ttl = 100;
    ttl.token_max_ttl = 50;
    auto too_long = f.approle.WriteRole("r", ttl, batch);
    REQUIRE_FALSE(too_long.has_value());
    CHECK(too_long.error().code() == Code::kInvalidArgument);

    AppRoleUpdate unbound;
    unbound.bind_secret_id = false;
    auto no_constraint = f.approle.WriteRole("r", unbound, batch);
    REQUIRE_FALSE(no_constraint.has_value());
    CHECK(no_constraint.error().code() == Code::kInvalidArgument);

    AppRoleUpdate bad_cidr;
    bad_cidr.secret_id_bound_cidrs = std::vector<std::string>{"10.0.0.0/33"};
    auto cidr = f.approle.WriteRole("r", bad_cidr, batch);
    REQUIRE_FALSE(cidr.has_value());
    CHECK(cidr.error().message().find("secret_id_bound_cidrs") != std::string::npos);

    AppRoleUpdate negative;
    negative.secret_id_num_uses = -1;
    auto uses = f.approle.WriteRole("r", negative, batch);
    REQUIRE_FALSE(uses.has_value());
    CHECK(uses.error().message().find("secret_id_num_uses") != std::string::npos);
    CHECK(batch.ops().empty());
  }

  TEST_CASE("role_id is unique across roles") {
    Fixture f;
    f.WriteRole("a");
    f.WriteRole("b");
    const std::string a_id = f.RoleId("a");
    CHECK(a_id != f.RoleId("b"));

    WriteBatch taken;
    auto duplicate = f.approle.SetRoleId("b", a_id, taken);
    REQUIRE_FALSE(duplicate.has_value());
    CHECK(duplicate.error().code() == Code::kAlreadyExists);
    CHECK(duplicate.error().message().find(a_id) == std::string::npos);

    const std::string old_b = f.RoleId("b");
    WriteBatch custom;
    REQUIRE(f.approle.SetRoleId("b", "custom-role-id", custom).has_value());
    f.Commit(std::move(custom));
    CHECK(f.RoleId("b") == "custom-role-id");

    auto secret = f.Generate("b");
    CheckInvalidLogin(f.Login(old_b, secret.secret_id));
    CHECK(f.Login("custom-role-id", secret.secret_id).has_value());

    // The old role_id of b is free again.
    WriteBatch reuse;
    CHECK(f.approle.SetRoleId("a", old_b, reuse).has_value());
  }

  TEST_CASE("generate lookup list and destroy secret ids") {
    Fixture f;
    f.WriteRole("web");
    SecretIdRequest request;
    request.metadata = {{"host", "web-1"}};
    auto first = f.Generate("web", request);
    auto second = f.Generate("web");
    CHECK(first.secret_id.size() == 64);
    CHECK(first.secret_id.RevealText() != second.secret_id.RevealText());

    auto looked_up = f.approle.LookupSecretId("web", first.secret_id);
    REQUIRE(looked_up.has_value());
    CHECK(looked_up->accessor == first.entry.accessor);
    CHECK(looked_up->metadata.at("host") == "web-1");
    auto by_accessor = f.approle.LookupSecretIdAccessor("web", second.entry.accessor);
    REQUIRE(by_accessor.has_value());
    CHECK(by_accessor->hash == second.entry.hash);

    auto accessors = f.approle.ListSecretIdAccessors("web");
    REQUIRE(accessors.has_value());
    CHECK(accessors->size() == 2);

    // No storage key or value contains either secret ID.
    auto rows = f.env.store->Scan("", "", 1000);
    REQUIRE(rows.has_value());
    for (const auto& row : *rows) {
      for (const auto* secret : {&first.secret_id, &second.secret_id}) {
        CHECK(row.key.find(secret->RevealText()) == std::string::npos);
        CHECK(kw::AsText(row.value).find(secret->RevealText()) == std::string_view::npos);
      }
    }

    WriteBatch destroy;
    REQUIRE(f.approle.DestroySecretId("web", first.secret_id, destroy).has_value());
    REQUIRE(f.approle.DestroySecretIdAccessor("web", second.entry.accessor, destroy).has_value());
    f.Commit(std::move(destroy));
    auto gone = f.approle.LookupSecretId("web", first.secret_id);
    REQUIRE_FALSE(gone.has_value());
    CHECK(gone.error().code() == Code::kNotFound);
    auto gone_accessor = f.approle.LookupSecretIdAccessor("web", second.entry.accessor);
    REQUIRE_FALSE(gone_accessor.has_value());
    CHECK(gone_accessor.error().code() == Code::kNotFound);
    auto empty = f.approle.ListSecretIdAccessors("web");
    REQUIRE(empty.has_value());
    CHECK(empty->empty());

    WriteBatch unknown;
    auto no_role = f.approle.GenerateSecretId("nope", {}, unknown);
    REQUIRE_FALSE(no_role.has_value());
    CHECK(no_role.error().code() == Code::kInvalidArgument);
  }

  TEST_CASE("generate stays within the role limits") {
    Fixture f;
    AppRoleUpdate limits;
    limits.secret_id_ttl = 600;
    limits.secret_id_num_uses = 5;
    limits.secret_id_bound_cidrs = std::vector<std::string>{"10.0.0.0/8"};
    f.WriteRole("web", limits);

    auto defaults = f.Generate("web");
    CHECK(defaults.entry.ttl == 600);
    CHECK(defaults.entry.num_uses == 5);

    const auto rejected = [&](const SecretIdRequest& request) {
      WriteBatch batch;
      auto generated = f.approle.GenerateSecretId("web", request, batch);
      REQUIRE_FALSE(generated.has_value());
      CHECK(generated.error().code() == Code::kInvalidArgument);
    };
    SecretIdRequest long_ttl;
    long_ttl.ttl = 601;
    rejected(long_ttl);
    SecretIdRequest no_ttl;
    no_ttl.ttl = 0;
    rejected(no_ttl);
    SecretIdRequest many_uses;
    many_uses.num_uses = 6;
    rejected(many_uses);
    SecretIdRequest outside;
    outside.cidr_list = {"192.168.0.0/16"};
    rejected(outside);
    SecretIdRequest wider;
    wider.cidr_list = {"10.0.0.0/7"};
    rejected(wider);

    SecretIdRequest narrower;
    narrower.ttl = 60;
    narrower.num_uses = 2;
    narrower.cidr_list = {"10.1.0.0/16"};
    auto inside = f.Generate("web", narrower);
    CHECK(inside.entry.ttl == 60);
    CHECK(inside.entry.num_uses == 2);
  }

  TEST_CASE("login returns the role's token request") {
    Fixture f;
    AppRoleUpdate settings;
    settings.token_policies = std::vector<std::string>{"app"};
    settings.token_ttl = 300;
    settings.token_max_ttl = 900;
    settings.token_num_uses = 4;
    settings.token_bound_cidrs = std::vector<std::string>{"127.0.0.0/8"};
    f.WriteRole("web", settings);
    SecretIdRequest request;
    request.metadata = {{"host", "web-1"}};
    auto secret = f.Generate("web", request);

    auto login = f.Login(f.RoleId("web"), secret.secret_id);
    REQUIRE(login.has_value());
    CHECK(login->policies == std::vector<std::string>{"app"});
    CHECK(login->ttl == 300);
    CHECK(login->explicit_max_ttl == 900);
    CHECK(login->num_uses == 4);
    CHECK(login->bound_cidrs == std::vector<std::string>{"127.0.0.0/8"});
    CHECK(login->meta.at("role_name") == "web");
    CHECK(login->meta.at("host") == "web-1");
    CHECK(login->display_name == "approle");
    CHECK(login->entity_id == "approle:web");
    CHECK(login->path == "auth/approle/login");
    CHECK(login->orphan);
  }

  TEST_CASE("secret id uses run out") {
    Fixture f;
    f.WriteRole("web");
    SecretIdRequest request;
    request.num_uses = 2;
    auto secret = f.Generate("web", request);
    const std::string role_id = f.RoleId("web");

    REQUIRE(f.Login(role_id, secret.secret_id).has_value());
    auto after_one = f.approle.LookupSecretId("web", secret.secret_id);
    REQUIRE(after_one.has_value());
    CHECK(after_one->num_uses == 1);
    REQUIRE(f.Login(role_id, secret.secret_id).has_value());
    CheckInvalidLogin(f.Login(role_id, secret.secret_id));
    auto accessors = f.approle.ListSecretIdAccessors("web");
    REQUIRE(accessors.has_value());
    CHECK(accessors->empty());
  }

  TEST_CASE("concurrent use of the last use aborts one commit") {
    Fixture f;
    f.WriteRole("web");
    SecretIdRequest request;
    request.num_uses = 1;
    auto secret = f.Generate("web", request);
    const std::string role_id = f.RoleId("web");

    WriteBatch first;
    WriteBatch second;
    REQUIRE(f.approle.Login(role_id, secret.secret_id, "127.0.0.1", first).has_value());
    REQUIRE(f.approle.Login(role_id, secret.secret_id, "127.0.0.1", second).has_value());
    REQUIRE(f.env.store->Commit(std::move(first)).has_value());
    auto lost = f.env.store->Commit(std::move(second));
    REQUIRE_FALSE(lost.has_value());
    CHECK(lost.error().code() == Code::kAborted);
    CheckInvalidLogin(f.Login(role_id, secret.secret_id));
  }

  TEST_CASE("expired secret ids rejected and tidied") {
    Fixture f;
    f.WriteRole("web");
    SecretIdRequest short_lived;
    short_lived.ttl = 60;
    auto expiring = f.Generate("web", short_lived);
    auto lasting = f.Generate("web");
    const std::string role_id = f.RoleId("web");
    REQUIRE(f.Login(role_id, expiring.secret_id).has_value());

    f.env.clock.Advance(std::chrono::seconds(60));
    CheckInvalidLogin(f.Login(role_id, expiring.secret_id));
    auto lookup = f.approle.LookupSecretId("web", expiring.secret_id);
    REQUIRE_FALSE(lookup.has_value());
    CHECK(lookup.error().code() == Code::kNotFound);

    WriteBatch tidy;
    auto removed = f.approle.TidySecretIds(tidy);
    REQUIRE(removed.has_value());
    CHECK(*removed == 1);
    f.Commit(std::move(tidy));
    auto accessors = f.approle.ListSecretIdAccessors("web");
    REQUIRE(accessors.has_value());
    CHECK(*accessors == std::vector<std::string>{lasting.entry.accessor});
    CHECK(f.Login(role_id, lasting.secret_id).has_value());
  }

  TEST_CASE("cidr bounds limit the login address") {
    Fixture f;
    AppRoleUpdate role_bound;
    role_bound.secret_id_bound_cidrs = std::vector<std::string>{"10.0.0.0/8", "::1/128"};
    f.WriteRole("web", role_bound);
    SecretIdRequest request;
    request.cidr_list = {"10.1.0.0/16"};
    auto secret = f.Generate("web", request);
    const std::string role_id = f.RoleId("web");

    auto from_loopback = f.Login(role_id, secret.secret_id, "127.0.0.1");
    REQUIRE_FALSE(from_loopback.has_value());
    CHECK(from_loopback.error().code() == Code::kInvalidArgument);
    CHECK(from_loopback.error().message().find("127.0.0.1") != std::string::npos);
    auto outside_secret = f.Login(role_id, secret.secret_id, "10.2.0.1");
    REQUIRE_FALSE(outside_secret.has_value());
    CHECK(outside_secret.error().message().find("secret ID") != std::string::npos);
    CHECK(f.Login(role_id, secret.secret_id, "10.1.2.3").has_value());
    CHECK(f.Login(role_id, secret.secret_id, "::ffff:10.1.2.3").has_value());
  }

  TEST_CASE("cidr blocks nest inside the role's") {
    Fixture f;
    WriteBatch rejected;
    AppRoleUpdate host_bits;
    host_bits.token_bound_cidrs = std::vector<std::string>{"10.0.0.1/8"};
    auto typo = f.approle.WriteRole("v6", host_bits, rejected);
    REQUIRE_FALSE(typo.has_value());
    CHECK(typo.error().code() == Code::kInvalidArgument);
    CHECK(typo.error().message().find("token_bound_cidrs") != std::string::npos);

    AppRoleUpdate bounds;
    bounds.secret_id_bound_cidrs = std::vector<std::string>{"2001:db8::/32", "192.168.0.0/16"};
    f.WriteRole("v6", bounds);
    SecretIdRequest inside;
    inside.cidr_list = {"2001:db8:1::/48", "192.168.7.0/24", "192.168.7.7"};
    f.Generate("v6", inside);
    for (std::string_view outside : {"2001:db9::/32", "2001:db8::/31", "::/0", "10.0.0.0/8",
                                     "not-a-cidr"}) {
      CAPTURE(outside);
      SecretIdRequest request;
      request.cidr_list = {std::string(outside)};
      WriteBatch batch;
      auto generated = f.approle.GenerateSecretId("v6", request, batch);
      REQUIRE_FALSE(generated.has_value());
      CHECK(generated.error().code() == Code::kInvalidArgument);
    }
  }

  TEST_CASE("unknown role id and wrong secret id look the same") {
    Fixture f;
    f.WriteRole("web");
    auto secret = f.Generate("web");
    const std::string role_id = f.RoleId("web");
    const SecretBuffer wrong = Secret(std::string(64, 'a'));

    // The first login builds the placeholder record once; measure the ones after it.
    CheckInvalidLogin(f.Login("warm-up", wrong));

    const int gets_before_unknown = f.storage.gets.load();
    const auto hashes_before_unknown = f.approle.hashes_computed();
    auto unknown = f.Login("00000000-0000-0000-0000-000000000000", secret.secret_id);
    const int unknown_gets = f.storage.gets.load() - gets_before_unknown;
    const auto unknown_hashes = f.approle.hashes_computed() - hashes_before_unknown;

    const int gets_before_wrong = f.storage.gets.load();
    const auto hashes_before_wrong = f.approle.hashes_computed();
    auto wrong_secret = f.Login(role_id, wrong);
    const int wrong_gets = f.storage.gets.load() - gets_before_wrong;
    const auto wrong_hashes = f.approle.hashes_computed() - hashes_before_wrong;

    CheckInvalidLogin(unknown);
    CheckInvalidLogin(wrong_secret);
    CHECK(unknown_gets == wrong_gets);
    CHECK(unknown_hashes == wrong_hashes);
    CHECK(unknown_gets == 3);
    CHECK(unknown_hashes == 3);
    CheckInvalidLogin(f.Login(role_id, SecretBuffer()));
  }

  TEST_CASE("forged role id index rejected") {
    Fixture f;
    f.WriteRole("victim");
    auto secret = f.Generate("victim");
    REQUIRE(f.Login(f.RoleId("victim"), secret.secret_id).has_value());

    // Someone with write access to the database binds a role_id of their choice to the
    // victim role. The encrypted role record still contains the real role_id.
    const std::string forged_id = "attacker-chosen-role-id";
    WriteBatch forge;
    forge.Put("auth/approle/role-id/" + kw::ToHex(kw::Sha256(kw::AsBytes(forged_id))),
              kw::Bytes{'v', 'i', 'c', 't', 'i', 'm'});
    f.Commit(std::move(forge));
    CheckInvalidLogin(f.Login(forged_id, secret.secret_id));

    // A forged accessor row pointing at the secret's hash does not reveal or destroy it.
    WriteBatch forge_accessor;
    forge_accessor.Put("auth/approle/accessor/victim/forged",
                       kw::Bytes(secret.entry.hash.begin(), secret.entry.hash.end()));
    f.Commit(std::move(forge_accessor));
    auto lookup = f.approle.LookupSecretIdAccessor("victim", "forged");
    REQUIRE_FALSE(lookup.has_value());
    CHECK(lookup.error().code() == Code::kNotFound);
  }

  TEST_CASE("copied secret id record fails to decrypt") {
    Fixture f;
    f.WriteRole("a");
    f.WriteRole("b");
    auto secret = f.Generate("a");
    auto row = f.env.store->Get("auth/approle/secret-id/a/" + secret.entry.hash);
    REQUIRE(row.has_value());
    REQUIRE(row->has_value());
    WriteBatch copy;
    copy.Put("auth/approle/secret-id/b/" + secret.entry.hash, **row);
    f.Commit(std::move(copy));
    auto login = f.Login(f.RoleId("b"), secret.secret_id);
    REQUIRE_FALSE(login.has_value());
    CHECK(login.error().code() == Code::kDataLoss);
  }

  TEST_CASE("deleting a role deletes its secret ids") {
    Fixture f;
    f.WriteRole("web");
    auto secret = f.Generate("web");
    const std::string role_id = f.RoleId("web");
    WriteBatch batch;
    REQUIRE(f.approle.DeleteRole("web", batch).has_value());
    f.Commit(std::move(batch));
    f.WriteRole("web");
    CheckInvalidLogin(f.Login(role_id, secret.secret_id));
    CheckInvalidLogin(f.Login(f.RoleId("web"), secret.secret_id));
    auto rows = f.env.store->Scan("auth/approle/secret-id/", "", 10);
    REQUIRE(rows.has_value());
    CHECK(rows->empty());
  }

  TEST_CASE("role without secret id binding logs in by address") {
    Fixture f;
    AppRoleUpdate unbound;
    unbound.bind_secret_id = false;
    unbound.secret_id_bound_cidrs = std::vector<std::string>{"127.0.0.1/32"};
    f.WriteRole("ci", unbound);
    const std::string role_id = f.RoleId("ci");
    CHECK(f.Login(role_id, SecretBuffer()).has_value());
    auto elsewhere = f.Login(role_id, SecretBuffer(), "127.0.0.2");
    REQUIRE_FALSE(elsewhere.has_value());
    CHECK(elsewhere.error().code() == Code::kInvalidArgument);
    WriteBatch batch;
    auto generated = f.approle.GenerateSecretId("ci", {}, batch);
    REQUIRE_FALSE(generated.has_value());
    CHECK(generated.error().code() == Code::kInvalidArgument);
  }
}
