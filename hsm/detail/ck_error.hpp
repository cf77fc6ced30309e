#pragma once

#include <string>
#include <string_view>

#include <p11-kit/pkcs11.h>

#include "base/result.hpp"

// Conversion of PKCS#11 return values into kw::Error. Internal to hsm/ and its tests.
namespace kw::hsm::detail {

// Returns the constant's name, such as "CKR_GENERAL_ERROR", or "CKR_0x..." for a value that
// p11-kit's pkcs11.h does not name (vendor codes included).
std::string RvName(CK_RV rv);

// Returns the error code for `rv`: permission_denied for a wrong PIN, unavailable when the
// module, token or session is gone, resource_exhausted for memory, invalid_argument for a bad
// object handle or a template the token rejects, internal otherwise.
Code RvCode(CK_RV rv);

// Returns an Error with RvCode(rv) and the message "<call> failed: <constant>".
Error RvError(std::string_view call, CK_RV rv);

// Returns OkStatus() for CKR_OK, else RvError(call, rv).
Status CheckRv(std::string_view call, CK_RV rv);

// True for the return values after which a session is unusable and must be replaced.
bool IsSessionLost(CK_RV rv);

}  // namespace kw::hsm::detail
