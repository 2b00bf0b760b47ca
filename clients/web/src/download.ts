// The trained model, through DownloadModel over the page's Connect API: the artifact first (size, SHA-256), then
// the file in chunks. The file is saved only once its size and SHA-256 match what the server announced.
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";
import type { Api } from "./api.js";
import type { ModelArtifact } from "../../typescript/src/gen/florist/v1/training_service_pb.js";

export interface SavedModel {
  readonly fileName: string;
  readonly sizeBytes: number;
  readonly sha256: string;
}

export async function downloadModel(api: Api, jobId: string, signal: AbortSignal): Promise<SavedModel> {
  const hash = sha256.create(); // incremental: crypto.subtle has none (and needs a secure context)
  const chunks: Uint8Array<ArrayBuffer>[] = [];
  let artifact: ModelArtifact | undefined;
  let size = 0;
  for await (const response of api.training.downloadModel({ jobId, round: 0 }, { signal })) {
    if (response.part.case === "artifact") {
      artifact = response.part.value;
    } else if (response.part.case === "chunk") {
      const chunk = new Uint8Array(response.part.value); // its own buffer, as a Blob part
      hash.update(chunk);
      chunks.push(chunk);
      size += chunk.length;
    }
  }
  if (artifact === undefined) {
    throw new Error("the server sent no model description");
  }
  const digest = bytesToHex(hash.digest());
  if (BigInt(size) !== artifact.sizeBytes || digest !== artifact.sha256) {
    throw new Error(
      `the model received (${size} bytes, sha256 ${digest}) is not the one announced ` +
        `(${artifact.sizeBytes} bytes, sha256 ${artifact.sha256}): not saved`,
    );
  }
  const fileName = `${jobId}-round-${artifact.round}.${artifact.format || "bin"}`;
  const url = URL.createObjectURL(new Blob(chunks, { type: "application/octet-stream" }));
  const link = document.createElement("a");
  link.href = url;
  link.download = fileName;
  link.click();
  // The click has handed the file to the browser; the object URL is not needed after this task.
  setTimeout(() => URL.revokeObjectURL(url), 0);
  return { fileName, sizeBytes: size, sha256: digest };
}
