// One gRPC (HTTP/2) connection to the control plane and the typed clients over it.
import { readFileSync } from "node:fs";
import { type Client, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { JobService } from "./gen/florist/v1/job_service_pb.js";
import { TrainingService } from "./gen/florist/v1/training_service_pb.js";

export interface ConnectionOptions {
  /** HOST:PORT of the control plane. */
  readonly address: string;
  /** Sent as `authorization: Bearer TOKEN` on every call when set. */
  readonly token?: string;
  /** PEM file of the CA that signed the server's certificate; TLS when set, plaintext otherwise. */
  readonly tlsCaFile?: string;
}

export interface FloristClients {
  readonly jobs: Client<typeof JobService>;
  readonly training: Client<typeof TrainingService>;
}

export function connect(options: ConnectionOptions): FloristClients {
  const transport = createTransport(options);
  return { jobs: createClient(JobService, transport), training: createClient(TrainingService, transport) };
}

function createTransport(options: ConnectionOptions): Transport {
  const interceptors: Interceptor[] = [];
  if (options.token) {
    interceptors.push(bearerToken(options.token));
  }
  // createGrpcTransport always speaks HTTP/2 (gRPC needs it); `https://` makes it TLS.
  return createGrpcTransport({
    baseUrl: `${options.tlsCaFile ? "https" : "http"}://${options.address}`,
    nodeOptions: options.tlsCaFile ? { ca: readFileSync(options.tlsCaFile) } : {},
    interceptors,
    // A StreamMetrics call can sit without data for minutes between rounds: ping so that a server or network
    // that went away is noticed (the call then fails UNAVAILABLE and is resumed). The control plane accepts
    // client pings no more often than every 10 s (grpc.http2.min_recv_ping_interval_without_data_ms).
    pingIntervalMs: 30_000,
    pingTimeoutMs: 15_000,
  });
}

function bearerToken(token: string): Interceptor {
  const value = `Bearer ${token}`;
  return (next) => async (request) => {
    request.header.set("authorization", value);
    return await next(request);
  };
}
