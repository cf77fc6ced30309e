#include "vault/pki/hsm_signer.hpp"

namespace kw::vault::pki {

Result<std::unique_ptr<HsmSigner>> HsmSigner::Generate(hsm::Token& token, std::string label) {
  KW_ASSIGN_OR_RETURN(hsm::KeyHandle key, token.GenerateEcP256KeyPair(label));
  KW_ASSIGN_OR_RETURN(Bytes spki, token.GetEcPublicKeySpki(label));
  return std::unique_ptr<HsmSigner>(new HsmSigner(token, std::move(label), key, std::move(spki)));
}

Result<std::unique_ptr<HsmSigner>> HsmSigner::Load(hsm::Token& token, std::string label) {
  KW_ASSIGN_OR_RETURN(hsm::KeyHandle key, token.FindPrivateKey(label));
  KW_ASSIGN_OR_RETURN(Bytes spki, token.GetEcPublicKeySpki(label));
  return std::unique_ptr<HsmSigner>(new HsmSigner(token, std::move(label), key, std::move(spki)));
}

Result<Bytes> HsmSigner::SignDigest(ByteSpan sha256_digest) const {
  return token_.SignEcdsa(key_, sha256_digest);
}

}  // namespace kw::vault::pki
