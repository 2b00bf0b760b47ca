// A job's trained global model, streamed by TrainingService.DownloadModel into a local .safetensors file. The file
// appears under its name only once it is complete and its size and SHA-256 match what the server announced, so a
// cut or corrupted download never leaves something that looks like a model.
import { createHash } from "node:crypto";
import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { FloristClients } from "./connection.js";
import type { ModelArtifact } from "./gen/florist/v1/training_service_pb.js";

/** As the Python CLI's `model download`: a big model on a slow link takes a while, a stalled one must not hang. */
const DOWNLOAD_TIMEOUT_MS = 600_000;

/** The download did not match its artifact (or had none): nothing was written. */
export class ModelDownloadError extends Error {}

export interface DownloadedModel {
  readonly path: string;
  readonly artifact: ModelArtifact;
}

/**
 * Downloads the model saved after `round` (0 = the final one) to `path`: written to a temporary file beside it
 * (same directory, so the rename is atomic), checked against the artifact's size and SHA-256, then renamed.
 */
export async function downloadModel(
  clients: FloristClients,
  jobId: string,
  path: string,
  round = 0,
): Promise<DownloadedModel> {
  const partial = join(dirname(path), `.${basename(path)}.${process.pid}.part`);
  const file = await open(partial, "wx"); // "x": never clobber a file someone else is writing
  let renamed = false;
  try {
    let artifact: ModelArtifact | undefined;
    const digest = createHash("sha256");
    let size = 0;
    const stream = clients.training.downloadModel({ jobId, round }, { timeoutMs: DOWNLOAD_TIMEOUT_MS });
    for await (const response of stream) {
      if (response.part.case === "artifact") {
        artifact = response.part.value;
      } else if (response.part.case === "chunk") {
        if (artifact === undefined) {
          throw new ModelDownloadError("the server sent model bytes before the artifact describing them");
        }
        await file.write(response.part.value);
        digest.update(response.part.value);
        size += response.part.value.length;
      }
    }
    await file.sync(); // on disk before the rename makes it visible under its name
    await file.close();
    if (artifact === undefined) {
      throw new ModelDownloadError("the server sent no model artifact; nothing written");
    }
    const sha256 = digest.digest("hex");
    if (BigInt(size) !== artifact.sizeBytes || sha256 !== artifact.sha256) {
      throw new ModelDownloadError(
        `model download corrupted or incomplete: got ${size} bytes with SHA-256 ${sha256}, ` +
          `the server announced ${artifact.sizeBytes} bytes with SHA-256 ${artifact.sha256}; nothing written`,
      );
    }
    await rename(partial, path);
    renamed = true;
    return { path, artifact };
  } finally {
    if (!renamed) {
      await file.close().catch(() => undefined); // already closed after a complete stream
      await rm(partial, { force: true });
    }
  }
}
