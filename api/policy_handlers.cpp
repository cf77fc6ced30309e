#include "api/policy_handlers.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "api/json_fields.hpp"
#include "base/bytes.hpp"
#include "base/log.hpp"
#include "vault/policy/acl.hpp"
#include "vault/policy/policy_store.hpp"

namespace kw::api {
namespace {

namespace policy = vault::policy;

constexpr std::string_view kAclPrefix = "sys/policies/acl/";
constexpr std::string_view kLegacyPrefix = "sys/policy/";

bool IsWrite(const RequestContext& c) { return c.method == "POST" || c.method == "PUT"; }

const nlohmann::json& BodyObject(const RequestContext& c) {
  static const nlohmann::json empty = nlohmann::json::object();
  return c.body.is_object() ? c.body : empty;
}

// Copies the fields of `data` to the top level of `envelope` as well, as Vault does for these
// sys/ endpoints (older clients read them there). Envelope fields are never overwritten.
nlohmann::json WithTopLevelCopy(nlohmann::json envelope, const nlohmann::json& data) {
  for (const auto& [key, value] : data.items()) {
    if (!envelope.contains(key)) envelope[key] = value;
  }
  return envelope;
}

Result<Reply> ListPolicies(RequestContext& c, bool legacy) {
  KW_ASSIGN_OR_RETURN(std::vector<std::string> names, c.vault->policies->List());
  nlohmann::json data = {{"keys", names}};
  if (!legacy) return Reply{200, Envelope(c, std::move(data))};
  data["policies"] = names;
  return Reply{200, WithTopLevelCopy(Envelope(c, data), data)};
}

Result<Reply> ReadPolicy(RequestContext& c, std::string_view name, bool legacy) {
  auto found = c.vault->policies->Get(name);
  if (!found && found.error().code() == Code::kNotFound) return ErrorReply(404, {});
  if (!found) return tl::unexpected(found.error());
  if (!legacy) {
    return Reply{200, Envelope(c, {{"name", (*found)->name}, {"policy", (*found)->document}})};
  }
  const nlohmann::json data = {{"name", (*found)->name}, {"rules", (*found)->document}};
  return Reply{200, WithTopLevelCopy(Envelope(c, data), data)};
}

// Reads the document from "policy" (or "rules", which the older endpoint also accepts). Like
// Vault, a document that is valid base64 is decoded first.
Result<std::string> PolicyDocument(const RequestContext& c, bool legacy) {
  KW_ASSIGN_OR_RETURN(auto document, OptionalString(BodyObject(c), "policy"));
  if ((!document || document->empty()) && legacy) {
    KW_ASSIGN_OR_RETURN(document, OptionalString(BodyObject(c), "rules"));
  }
  if (!document || document->empty()) {
    return InvalidArgument("missing field \"policy\": send the policy document in HCL or JSON");
  }
  if (auto decoded = FromBase64(*document); decoded && !decoded->empty()) {
    return std::string(AsText(*decoded));
  }
  return std::move(*document);
}

Result<Reply> WritePolicy(RequestContext& c, std::string_view raw_name, bool legacy) {
  KW_ASSIGN_OR_RETURN(std::string name, policy::NormalizeName(raw_name));
  if (name == policy::kRootPolicyName) {
    return InvalidArgument("cannot update the \"root\" policy");
  }
  KW_ASSIGN_OR_RETURN(std::string document, PolicyDocument(c, legacy));
  KW_ASSIGN_OR_RETURN(policy::Policy parsed, policy::ParsePolicy(name, document));
  KW_RETURN_IF_ERROR(c.vault->policies->StagePut(parsed, c.batch));
  c.after_commit = [vault = c.vault, name, request_id = c.request_id] {
    vault->policies->Invalidate(name);
    log::Info("policy written", {{"policy", name}, {log::kRequestId, request_id}});
  };
  return Reply{204, nullptr};
}

Result<Reply> DeletePolicy(RequestContext& c, std::string_view raw_name) {
  KW_ASSIGN_OR_RETURN(std::string name, policy::NormalizeName(raw_name));
  KW_RETURN_IF_ERROR(c.vault->policies->StageDelete(name, c.batch));
  c.after_commit = [vault = c.vault, name, request_id = c.request_id] {
    vault->policies->Invalidate(name);
    log::Info("policy deleted", {{"policy", name}, {log::kRequestId, request_id}});
  };
  return Reply{204, nullptr};
}

Result<Reply> HandleNamedPolicy(RequestContext& c, std::string_view name, bool legacy) {
  if (name.empty()) return InvalidArgument("missing policy name in the path");
  if (c.operation == "read") return ReadPolicy(c, name, legacy);
  if (IsWrite(c)) return WritePolicy(c, name, legacy);
  if (c.method == "DELETE") return DeletePolicy(c, name);
  return MethodNotAllowed(c);
}

// Reads the paths to check: "paths" as a list or a comma-separated string, else "path".
Result<std::vector<std::string>> RequestedPaths(const RequestContext& c) {
  const nlohmann::json& body = BodyObject(c);
  std::vector<std::string> paths;
  if (body.contains("paths") && body["paths"].is_array()) {
    for (const auto& item : body["paths"]) {
      if (!item.is_string()) {
        return InvalidArgument("invalid type for field \"paths\": expected a list of strings");
      }
      paths.push_back(item.get<std::string>());
    }
  } else {
    KW_ASSIGN_OR_RETURN(auto text, OptionalString(body, "paths"));
    if (!text) {
      KW_ASSIGN_OR_RETURN(text, OptionalString(body, "path"));
    }
    if (text) {
      std::size_t start = 0;
      while (start <= text->size()) {
        const std::size_t comma = std::min(text->find(',', start), text->size());
        if (comma > start) paths.push_back(text->substr(start, comma - start));
        start = comma + 1;
      }
    }
  }
  if (paths.empty()) return InvalidArgument("missing field \"paths\": list the paths to check");
  return paths;
}

// Returns whether `path` is inside every bound-path list of `entry` (no lists: any path).
bool WithinBoundPaths(const vault::auth::TokenEntry* entry, std::string_view path, bool list) {
  if (entry == nullptr) return true;
  for (const auto& globs : entry->bound_paths) {
    bool matched = false;
    for (const auto& glob : globs) matched = matched || policy::MatchesPattern(glob, path, list);
    if (!matched) return false;
  }
  return true;
}

// Returns the token named in the request body (by token or accessor), whose capabilities the
// request checks.
Result<std::shared_ptr<const vault::auth::TokenEntry>> SubjectToken(const RequestContext& c) {
  const nlohmann::json& body = BodyObject(c);
  if (c.path == "sys/capabilities") {
    KW_ASSIGN_OR_RETURN(auto token, OptionalString(body, "token"));
    if (!token || token->empty()) return InvalidArgument("missing field \"token\"");
    auto entry = c.vault->tokens->LookupToken(*token);
    WipeString(*token);
    if (!entry && (entry.error().code() == Code::kNotFound ||
                   entry.error().code() == Code::kUnauthenticated)) {
      return InvalidArgument("invalid value for field \"token\": no such token");
    }
    return entry;
  }
  KW_ASSIGN_OR_RETURN(auto accessor, OptionalString(body, "accessor"));
  if (!accessor || accessor->empty()) return InvalidArgument("missing field \"accessor\"");
  auto entry = c.vault->tokens->LookupAccessor(*accessor);
  if (!entry && entry.error().code() == Code::kNotFound) {
    return InvalidArgument("invalid value for field \"accessor\": no token has this accessor");
  }
  return entry;
}

}  // namespace

Result<Reply> HandlePolicies(RequestContext& c) {
  const std::string_view path = c.path;
  if (path == "sys/policies/acl") {
    if (c.operation != "list") return MethodNotAllowed(c);
    return ListPolicies(c, /*legacy=*/false);
  }
  if (path.starts_with(kAclPrefix)) {
    return HandleNamedPolicy(c, path.substr(kAclPrefix.size()), /*legacy=*/false);
  }
  if (path == "sys/policy") {
    if (c.operation != "read" && c.operation != "list") return MethodNotAllowed(c);
    return ListPolicies(c, /*legacy=*/true);
  }
  if (path.starts_with(kLegacyPrefix)) {
    return HandleNamedPolicy(c, path.substr(kLegacyPrefix.size()), /*legacy=*/true);
  }
  return ErrorReply(404, {"no handler for route \"" + c.path + "\""});
}

Result<Reply> HandleCapabilities(RequestContext& c) {
  if (c.path != "sys/capabilities-self" && c.path != "sys/capabilities" &&
      c.path != "sys/capabilities-accessor") {
    return ErrorReply(404, {"no handler for route \"" + c.path + "\""});
  }
  if (!IsWrite(c)) return MethodNotAllowed(c);
  KW_ASSIGN_OR_RETURN(std::vector<std::string> paths, RequestedPaths(c));

  std::shared_ptr<const vault::auth::TokenEntry> subject;
  std::shared_ptr<const policy::Acl> acl;
  if (c.path == "sys/capabilities-self") {
    subject = c.identity.entry;
    if (c.identity.root) {
      acl = std::make_shared<const policy::Acl>(policy::Acl::FromPolicies({}, true));
    } else {
      KW_ASSIGN_OR_RETURN(acl, c.vault->policies->AclFor(c.identity.policies));
    }
  } else {
    KW_ASSIGN_OR_RETURN(subject, SubjectToken(c));
    if (subject->root()) {
      acl = std::make_shared<const policy::Acl>(policy::Acl::FromPolicies({}, true));
    } else {
      KW_ASSIGN_OR_RETURN(acl, c.vault->policies->AclFor(subject->policies));
    }
  }

  nlohmann::json data = nlohmann::json::object();
  for (std::string_view path : paths) {
    while (path.starts_with('/')) path.remove_prefix(1);
    // A path ending in '/' names a folder, so it is checked as a LIST would be.
    const bool list = path.ends_with('/');
    std::uint32_t capabilities = acl->Capabilities(path, list);
    if (!WithinBoundPaths(subject.get(), path, list)) capabilities = 0;
    data[std::string(path)] = policy::CapabilityNames(capabilities);
  }
  // Vault adds "capabilities" when one path was asked for.
  if (paths.size() == 1) data["capabilities"] = data.begin().value();
  return Reply{200, WithTopLevelCopy(Envelope(c, data), data)};
}

}  // namespace kw::api
