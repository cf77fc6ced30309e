#include "vault/pki/ca_store.hpp"

#include <nlohmann/json.hpp>

#include "vault/pki/jwk.hpp"

namespace kw::vault::pki {
namespace {

using nlohmann::json;

std::string Encode(const Bytes& der) { return ToBase64(der); }

Result<Bytes> Decode(const json& value, std::string_view field) {
  if (!value.is_string()) return DataLoss("CA state field " + std::string(field) + " is not text");
  auto bytes = FromBase64(value.get_ref<const std::string&>());
  if (!bytes) return DataLoss("CA state field " + std::string(field) + " is not base64");
  return std::move(*bytes);
}

}  // namespace

const CaVersion* CaState::Active(std::int64_t now) const {
  for (auto it = versions.rbegin(); it != versions.rend(); ++it) {
    if (it->installed() && it->activate_at <= now) return &*it;
  }
  return nullptr;
}

const CaVersion* CaState::Signing(std::int64_t now) const {
  return Active(now + kSigningLeadSeconds);
}

const CaVersion* CaState::Find(int version) const {
  for (const CaVersion& candidate : versions) {
    if (candidate.version == version) return &candidate;
  }
  return nullptr;
}

CaVersion* CaState::Find(int version) {
  for (CaVersion& candidate : versions) {
    if (candidate.version == version) return &candidate;
  }
  return nullptr;
}

std::string SerializeCaState(const CaState& state) {
  json versions = json::array();
  for (const CaVersion& v : state.versions) {
    json chain = json::array();
    for (const Bytes& der : v.chain) chain.push_back(Encode(der));
    versions.push_back({{"version", v.version},
                        {"key_label", v.key_label},
                        {"spki", Encode(v.spki)},
                        {"kid", v.kid},
                        {"common_name", v.common_name},
                        {"certificate", Encode(v.certificate)},
                        {"chain", std::move(chain)},
                        {"created_at", v.created_at},
                        {"activate_at", v.activate_at},
                        {"activation_delay", v.activation_delay},
                        {"not_before", v.not_before},
                        {"not_after", v.not_after}});
  }
  return json{{"trust_domain", state.trust_domain},
              {"mode", state.mode},
              {"sequence_base", state.sequence_base},
              {"refresh_hint", state.refresh_hint},
              {"versions", std::move(versions)}}
      .dump();
}

Result<CaState> ParseCaState(std::string_view json_text) {
  try {
    json j = json::parse(json_text);
    CaState state;
    j.at("trust_domain").get_to(state.trust_domain);
    j.at("mode").get_to(state.mode);
    j.at("sequence_base").get_to(state.sequence_base);
    j.at("refresh_hint").get_to(state.refresh_hint);
    for (const json& item : j.at("versions")) {
      CaVersion v;
      item.at("version").get_to(v.version);
      item.at("key_label").get_to(v.key_label);
      KW_ASSIGN_OR_RETURN(v.spki, Decode(item.at("spki"), "spki"));
      item.at("kid").get_to(v.kid);
      v.common_name = item.value("common_name", std::string());
      KW_ASSIGN_OR_RETURN(v.certificate, Decode(item.at("certificate"), "certificate"));
      for (const json& der : item.at("chain")) {
        KW_ASSIGN_OR_RETURN(Bytes cert, Decode(der, "chain"));
        v.chain.push_back(std::move(cert));
      }
      item.at("created_at").get_to(v.created_at);
      item.at("activate_at").get_to(v.activate_at);
      item.at("activation_delay").get_to(v.activation_delay);
      item.at("not_before").get_to(v.not_before);
      item.at("not_after").get_to(v.not_after);
      state.versions.push_back(std::move(v));
    }
    return state;
  } catch (const json::exception& e) {
    return DataLoss("the stored CA state is malformed: " + detail::DescribeJsonError(e));
  }
}

Result<std::optional<StoredCaState>> LoadCaState(storage::Storage& storage, Barrier& barrier) {
  KW_ASSIGN_OR_RETURN(std::optional<Bytes> raw, storage.Get(kCaStateKey));
  if (!raw) return std::optional<StoredCaState>();
  KW_ASSIGN_OR_RETURN(SecretBuffer plain, barrier.Decrypt(*raw, kCaStateAad));
  KW_ASSIGN_OR_RETURN(CaState state, ParseCaState(plain.RevealText()));
  return std::optional<StoredCaState>(StoredCaState{std::move(state), std::move(*raw)});
}

Status StageCaState(const CaState& state, const std::optional<Bytes>& previous, Barrier& barrier,
                    storage::WriteBatch& batch) {
  KW_ASSIGN_OR_RETURN(Bytes sealed, barrier.Encrypt(AsBytes(SerializeCaState(state)), kCaStateAad));
  batch.Expect(std::string(kCaStateKey), previous);
  batch.Put(std::string(kCaStateKey), std::move(sealed));
  return OkStatus();
}

}  // namespace kw::vault::pki
