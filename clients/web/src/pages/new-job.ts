// Operators create a job from a CreateJobRequest body in JSON (what `florist-grpc job create --file` reads, or just
// the job), and may start it at once. Errors come back as the API gives them, each bad field on its own line.
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { CreateJobRequestSchema } from "../../../typescript/src/gen/florist/v1/job_service_pb.js";
import { h } from "../dom.js";
import { describe } from "../errors.js";
import type { PageContext } from "../page.js";

function example(ctx: PageContext): string {
  const first = (names: readonly { name: string }[], fallback: string): string => names[0]?.name ?? fallback;
  const strategy = ctx.catalog.strategies.find((s) => s.name === "FEDAVG") ?? ctx.catalog.strategies[0];
  const job = {
    model: first(ctx.catalog.models, "MLP"),
    strategy: strategy?.name ?? "FEDAVG",
    optimizer: first(ctx.catalog.optimizers, "SGD"),
    client_type: strategy?.clientTypes[0] ?? "FEDAVG",
    server_config: { n_server_rounds: 3, batch_size: 32, local_epochs: 1 },
    clients: [{ data_path: "/absolute/path/client0.pt" }, { data_path: "/absolute/path/client1.pt" }],
  };
  return JSON.stringify({ job }, null, 2);
}

export function newJobForm(ctx: PageContext): HTMLElement {
  const body = h("textarea", { "aria-label": "CreateJobRequest as JSON", rows: 14, spellcheck: "false", name: "job" });
  body.value = example(ctx);
  const problems = h("pre", { class: "problems", role: "alert", hidden: true });
  const submit = async (start: boolean): Promise<void> => {
    problems.hidden = true;
    let request;
    try {
      const parsed = JSON.parse(body.value) as JsonValue;
      const isRequest = parsed !== null && typeof parsed === "object" && !Array.isArray(parsed) && "job" in parsed;
      const wrapped = isRequest ? parsed : { job: parsed };
      request = fromJson(CreateJobRequestSchema, wrapped);
    } catch (error) {
      problems.textContent = `not a CreateJobRequest: ${error instanceof Error ? error.message : String(error)}`;
      problems.hidden = false;
      return;
    }
    try {
      const job = (await ctx.api.jobs.createJob(request, { signal: ctx.signal })).job;
      if (job === undefined) {
        return;
      }
      if (start) {
        await ctx.api.training.startTraining({ jobId: job.id }, { signal: ctx.signal });
      }
      ctx.navigate(`#/jobs/${job.id}`);
    } catch (error) {
      problems.textContent = describe(error).join("\n");
      problems.hidden = false;
    }
  };
  const button = (label: string, action: string, start: boolean): HTMLButtonElement =>
    h("button", { type: "button", "data-action": action, onclick: () => void submit(start) }, label);
  return h(
    "section",
    { class: "panel new-job" },
    h("h2", {}, "New job"),
    h(
      "p",
      { class: "muted" },
      "A CreateJobRequest in JSON, as `florist-grpc job create --file` reads it (or just the job). Data paths are " +
        "on the machine that runs each client.",
    ),
    body,
    problems,
    h(
      "div",
      { class: "actions" },
      button("Create", "create", false),
      button("Create and start", "create-and-start", true),
    ),
  );
}
