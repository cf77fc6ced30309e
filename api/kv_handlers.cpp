#include "api/kv_handlers.hpp"

#include "api/json_fields.hpp"
#include "base/duration.hpp"
#include "vault/kv/kv_engine.hpp"

namespace kw::api {
namespace {

using vault::kv::KvEngine;

// Vault's limits on custom_metadata.
constexpr std::size_t kMaxCustomMetadataKeys = 64;
constexpr std::size_t kMaxCustomMetadataKeyBytes = 128;
constexpr std::size_t kMaxCustomMetadataValueBytes = 512;

bool IsWrite(const RequestContext& c) { return c.method == "POST" || c.method == "PUT"; }

Status RequireSecretPath(std::string_view path) {
  if (path.empty()) return InvalidArgument("missing secret path: use secret/data/<path>");
  return OkStatus();
}

// Vault returns 404 with an empty error list when a secret or version does not exist.
Reply NotFoundReply() { return ErrorReply(404, {}); }

Result<SecretBuffer> SerialiseData(const nlohmann::json& data) {
  std::string text = data.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
  SecretBuffer buffer = SecretBuffer::CopyFrom(text);
  WipeString(text);
  return buffer;
}

Result<std::optional<std::int64_t>> ReadCas(const nlohmann::json& body) {
  if (!body.is_object() || !body.contains("options") || body["options"].is_null()) {
    return std::optional<std::int64_t>();
  }
  if (!body["options"].is_object()) {
    return InvalidArgument("invalid type for field \"options\": expected a JSON object");
  }
  KW_ASSIGN_OR_RETURN(auto cas, OptionalInt(body["options"], "cas"));
  if (cas && *cas < 0) {
    return InvalidArgument("invalid value for field \"options.cas\": expected an integer >= 0");
  }
  return cas;
}

Result<Reply> WriteVersion(RequestContext& c, KvEngine& kv, std::string_view path,
                           const nlohmann::json& data, std::optional<std::int64_t> cas) {
  KW_ASSIGN_OR_RETURN(SecretBuffer plain, SerialiseData(data));
  KW_ASSIGN_OR_RETURN(auto written, kv.Write(path, plain, cas, c.batch));
  return Reply{200, Envelope(c, vault::kv::VersionToJson(written.version, written.metadata,
                                                         written.custom_metadata))};
}

Result<Reply> ReadData(RequestContext& c, KvEngine& kv, std::string_view path) {
  std::int64_t version = 0;
  if (auto text = c.Query("version")) {
    auto parsed = ParseNonNegative(*text);
    if (!parsed) {
      return InvalidArgument(
          "invalid value for query parameter \"version\": expected a non-negative integer");
    }
    version = *parsed;
  }
  auto read = kv.Read(path, version);
  if (!read && read.error().code() == Code::kNotFound) return NotFoundReply();
  if (!read) return tl::unexpected(read.error());

  nlohmann::json metadata =
      vault::kv::VersionToJson(read->version, read->metadata, read->custom_metadata);
  if (!read->readable) {
    return Reply{404, Envelope(c, {{"data", nullptr}, {"metadata", std::move(metadata)}})};
  }
  nlohmann::json data;
  try {
    data = nlohmann::json::parse(read->data.RevealText());
  } catch (const std::exception&) {
    return DataLoss("stored secret is not valid JSON");
  }
  return Reply{200, Envelope(c, {{"data", std::move(data)}, {"metadata", std::move(metadata)}})};
}

bool IsMergePatch(const RequestContext& c);
Reply UnsupportedMediaType();

Result<Reply> PatchData(RequestContext& c, KvEngine& kv, std::string_view path) {
  if (!IsMergePatch(c)) return UnsupportedMediaType();
  if (!c.body.is_object() || !c.body.contains("data")) {
    return InvalidArgument("no data provided: the body needs a \"data\" object");
  }
  if (!c.body["data"].is_object()) {
    return InvalidArgument("invalid type for field \"data\": expected a JSON object");
  }
  KW_ASSIGN_OR_RETURN(auto cas, ReadCas(c.body));

  auto current = kv.Read(path, 0);
  if (!current && current.error().code() == Code::kNotFound) return NotFoundReply();
  if (!current) return tl::unexpected(current.error());
  if (!current->readable) return NotFoundReply();

  nlohmann::json merged;
  try {
    merged = nlohmann::json::parse(current->data.RevealText());
  } catch (const std::exception&) {
    return DataLoss("stored secret is not valid JSON");
  }
  merged.merge_patch(c.body["data"]);
  // Vault checks cas against the version the patch applies to.
  return WriteVersion(c, kv, path, merged, cas ? cas : std::optional<std::int64_t>(current->version));
}

Result<Reply> HandleData(RequestContext& c, KvEngine& kv, std::string_view path) {
  KW_RETURN_IF_ERROR(RequireSecretPath(path));
  if (c.operation == "read") return ReadData(c, kv, path);
  if (IsWrite(c)) {
    if (!c.body.is_object() || !c.body.contains("data") || c.body["data"].is_null()) {
      return InvalidArgument("no data provided: the body needs a \"data\" object");
    }
    if (!c.body["data"].is_object()) {
      return InvalidArgument("invalid type for field \"data\": expected a JSON object");
    }
    KW_ASSIGN_OR_RETURN(auto cas, ReadCas(c.body));
    return WriteVersion(c, kv, path, c.body["data"], cas);
  }
  if (c.method == "PATCH") return PatchData(c, kv, path);
  if (c.method == "DELETE") {
    KW_RETURN_IF_ERROR(kv.Delete(path, {}, c.batch));
    return Reply{204, nullptr};
  }
  return MethodNotAllowed(c);
}

Result<vault::kv::MetadataUpdate> ReadMetadataUpdate(const nlohmann::json& body) {
  vault::kv::MetadataUpdate update;
  const nlohmann::json empty = nlohmann::json::object();
  const nlohmann::json& fields = body.is_object() ? body : empty;
  KW_ASSIGN_OR_RETURN(update.max_versions, OptionalInt(fields, "max_versions"));
  if (update.max_versions && *update.max_versions < 0) {
    return InvalidArgument("invalid value for field \"max_versions\": expected an integer >= 0");
  }
  KW_ASSIGN_OR_RETURN(update.cas_required, OptionalBool(fields, "cas_required"));
  KW_ASSIGN_OR_RETURN(update.delete_version_after,
                      OptionalDuration(fields, "delete_version_after"));
  KW_ASSIGN_OR_RETURN(update.custom_metadata, OptionalStringMap(fields, "custom_metadata"));
  if (update.custom_metadata) {
    if (update.custom_metadata->size() > kMaxCustomMetadataKeys) {
      return InvalidArgument("custom_metadata has more than 64 keys");
    }
    for (const auto& [key, value] : *update.custom_metadata) {
      if (key.empty() || key.size() > kMaxCustomMetadataKeyBytes) {
        return InvalidArgument("custom_metadata keys must be 1 to 128 bytes long");
      }
      if (value.size() > kMaxCustomMetadataValueBytes) {
        return InvalidArgument("custom_metadata values must be at most 512 bytes long");
      }
    }
  }
  return update;
}

bool IsMergePatch(const RequestContext& c) {
  const auto content_type = c.http.Header("content-type");
  return content_type &&
         content_type->find("application/merge-patch+json") != std::string_view::npos;
}

Reply UnsupportedMediaType() {
  return ErrorReply(415, {"unsupported media type: PATCH needs Content-Type "
                          "application/merge-patch+json"});
}

// Merges the body into an existing secret's settings, as Vault's metadata PATCH does: fields
// that are present replace the stored ones, and custom_metadata is merged key by key, a null
// value removing its key.
Result<Reply> PatchMetadata(RequestContext& c, KvEngine& kv, std::string_view path) {
  if (!IsMergePatch(c)) return UnsupportedMediaType();
  auto current = kv.ReadMetadata(path);
  if (!current && current.error().code() == Code::kNotFound) return NotFoundReply();
  if (!current) return tl::unexpected(current.error());

  nlohmann::json body = c.body.is_object() ? c.body : nlohmann::json::object();
  nlohmann::json custom = nlohmann::json(current->custom_metadata);
  const bool patches_custom = body.contains("custom_metadata");
  if (patches_custom) {
    if (!body["custom_metadata"].is_object() && !body["custom_metadata"].is_null()) {
      return InvalidArgument("invalid type for field \"custom_metadata\": expected an object");
    }
    custom.merge_patch(body["custom_metadata"]);
    body["custom_metadata"] = custom.is_null() ? nlohmann::json::object() : custom;
  }
  KW_ASSIGN_OR_RETURN(auto update, ReadMetadataUpdate(body));
  KW_RETURN_IF_ERROR(kv.WriteMetadata(path, update, c.batch));
  return Reply{204, nullptr};
}

// Replaces every leaf of `data` with null below `depth` levels (0: no limit), as Vault's
// subkeys endpoint shows a secret's shape without its values.
nlohmann::json Subkeys(const nlohmann::json& data, std::int64_t depth, std::int64_t level) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [key, value] : data.items()) {
    const bool descend = value.is_object() && !value.empty() && (depth == 0 || level < depth);
    out[key] = descend ? Subkeys(value, depth, level + 1) : nlohmann::json(nullptr);
  }
  return out;
}

Result<Reply> HandleSubkeys(RequestContext& c, KvEngine& kv, std::string_view path) {
  KW_RETURN_IF_ERROR(RequireSecretPath(path));
  if (c.operation != "read") return MethodNotAllowed(c);
  std::int64_t depth = 0;
  if (auto text = c.Query("depth")) {
    auto parsed = ParseNonNegative(*text);
    if (!parsed) {
      return InvalidArgument(
          "invalid value for query parameter \"depth\": expected a non-negative integer");
    }
    depth = *parsed;
  }
  KW_ASSIGN_OR_RETURN(Reply read, ReadData(c, kv, path));
  if (read.status != 200) return read;
  nlohmann::json& data = read.body["data"];
  data["subkeys"] = Subkeys(data["data"], depth, 1);
  data.erase("data");
  return read;
}

Result<Reply> HandleMetadata(RequestContext& c, KvEngine& kv, std::string_view path) {
  if (c.operation == "list") {
    std::string prefix(path);
    if (!prefix.empty()) prefix.push_back('/');
    auto keys = kv.List(prefix);
    if (!keys && keys.error().code() == Code::kNotFound) return NotFoundReply();
    if (!keys) return tl::unexpected(keys.error());
    return Reply{200, Envelope(c, {{"keys", *keys}})};
  }
  KW_RETURN_IF_ERROR(RequireSecretPath(path));
  if (c.operation == "read") {
    auto metadata = kv.ReadMetadata(path);
    if (!metadata && metadata.error().code() == Code::kNotFound) return NotFoundReply();
    if (!metadata) return tl::unexpected(metadata.error());
    return Reply{200, Envelope(c, vault::kv::MetadataToJson(*metadata))};
  }
  if (IsWrite(c)) {
    KW_ASSIGN_OR_RETURN(auto update, ReadMetadataUpdate(c.body));
    KW_RETURN_IF_ERROR(kv.WriteMetadata(path, update, c.batch));
    return Reply{204, nullptr};
  }
  if (c.method == "DELETE") {
    KW_RETURN_IF_ERROR(kv.DeleteMetadata(path, c.batch));
    return Reply{204, nullptr};
  }
  if (c.method == "PATCH") return PatchMetadata(c, kv, path);
  return MethodNotAllowed(c);
}

Result<Reply> HandleVersions(RequestContext& c, KvEngine& kv, std::string_view action,
                             std::string_view path) {
  KW_RETURN_IF_ERROR(RequireSecretPath(path));
  if (!IsWrite(c)) return MethodNotAllowed(c);
  const nlohmann::json empty = nlohmann::json::object();
  KW_ASSIGN_OR_RETURN(auto versions, IntList(c.body.is_object() ? c.body : empty, "versions"));
  if (versions.empty()) {
    return InvalidArgument("no versions provided: the body needs \"versions\", a list of integers");
  }
  if (action == "delete") KW_RETURN_IF_ERROR(kv.Delete(path, versions, c.batch));
  if (action == "undelete") KW_RETURN_IF_ERROR(kv.Undelete(path, versions, c.batch));
  if (action == "destroy") KW_RETURN_IF_ERROR(kv.Destroy(path, versions, c.batch));
  return Reply{204, nullptr};
}

Result<Reply> HandleConfig(RequestContext& c, KvEngine& kv) {
  if (c.operation == "read") {
    KW_ASSIGN_OR_RETURN(auto config, kv.ReadConfig());
    return Reply{200, Envelope(c, {{"max_versions", config.max_versions},
                                   {"cas_required", config.cas_required},
                                   {"delete_version_after",
                                    FormatDuration(config.delete_version_after)}})};
  }
  if (!IsWrite(c)) return MethodNotAllowed(c);
  KW_ASSIGN_OR_RETURN(auto config, kv.ReadConfig());
  KW_ASSIGN_OR_RETURN(auto update, ReadMetadataUpdate(c.body));
  if (update.custom_metadata) {
    return InvalidArgument("field \"custom_metadata\" is not a mount setting");
  }
  if (update.max_versions) config.max_versions = *update.max_versions;
  if (update.cas_required) config.cas_required = *update.cas_required;
  if (update.delete_version_after) config.delete_version_after = *update.delete_version_after;
  KW_RETURN_IF_ERROR(kv.WriteConfig(config, c.batch));
  return Reply{204, nullptr};
}

}  // namespace

Result<Reply> HandleKv(RequestContext& c) {
  KvEngine& kv = *c.vault->secret;
  std::string_view rest = std::string_view(c.path).substr(std::string_view("secret").size());
  if (rest.empty() || rest == "/config") {
    if (rest.empty()) return ErrorReply(404, {"no handler for route \"secret\""});
    return HandleConfig(c, kv);
  }
  rest.remove_prefix(1);
  const std::size_t slash = rest.find('/');
  const std::string_view action = rest.substr(0, slash);
  const std::string_view path =
      slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);

  if (action == "data") return HandleData(c, kv, path);
  if (action == "metadata") return HandleMetadata(c, kv, path);
  if (action == "subkeys") return HandleSubkeys(c, kv, path);
  if (action == "delete" || action == "undelete" || action == "destroy") {
    return HandleVersions(c, kv, action, path);
  }
  return ErrorReply(404, {"no handler for route \"" + c.path + "\""});
}

}  // namespace kw::api
