// The page's clients of the florist.v1 API, over the Connect protocol (binary protobuf) to the origin that served
// the page: the same services, messages and errors as the gRPC port, generated once in clients/typescript.
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AgentService } from "../../typescript/src/gen/florist/v1/agent_service_pb.js";
import { CatalogService } from "../../typescript/src/gen/florist/v1/catalog_service_pb.js";
import { JobService } from "../../typescript/src/gen/florist/v1/job_service_pb.js";
import { TrainingService } from "../../typescript/src/gen/florist/v1/training_service_pb.js";
import type { Session } from "./session.js";
import type { StreamBudget } from "./stream-budget.js";

export const ROLE_HEADER = "florist-caller-role";

export interface Api {
  readonly jobs: Client<typeof JobService>;
  readonly training: Client<typeof TrainingService>;
  readonly catalog: Client<typeof CatalogService>;
  readonly agents: Client<typeof AgentService>;
}

/** Sends the tab's token with every call and notes the role each response names. */
function authenticated(session: Session): Interceptor {
  return (next) => async (request) => {
    const token = session.token();
    if (token) {
      request.header.set("authorization", `Bearer ${token}`);
    }
    const response = await next(request);
    session.noteRole(response.header.get(ROLE_HEADER));
    return response;
  };
}

export function createApi(session: Session, budget: StreamBudget): Api {
  const transport = createConnectTransport({
    baseUrl: window.location.origin,
    useBinaryFormat: true,
    interceptors: [budget.interceptor, authenticated(session)],
  });
  return {
    jobs: createClient(JobService, transport),
    training: createClient(TrainingService, transport),
    catalog: createClient(CatalogService, transport),
    agents: createClient(AgentService, transport),
  };
}
