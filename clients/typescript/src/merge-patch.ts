// RFC 7386 JSON Merge Patch: every MetricsEvent carries one against its source's previous report, so applying a
// source's patches in order rebuilds that report exactly.
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";

export function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Returns `target` with `patch` applied; neither argument is modified. */
export function applyMergePatch(target: JsonValue | undefined, patch: JsonValue): JsonValue {
  if (!isObject(patch)) {
    return patch;
  }
  const result: JsonObject = isObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) {
      delete result[key];
    } else {
      result[key] = applyMergePatch(result[key], value);
    }
  }
  return result;
}
