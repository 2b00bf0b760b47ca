// The sites' agents: connected or not, since when, what they run on, and any problem they report.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { h, when } from "../dom.js";
import { type PageContext, table } from "../page.js";

export async function agentsPage(ctx: PageContext): Promise<void> {
  const { agents } = await ctx.api.agents.listAgents({}, { signal: ctx.signal });
  const body =
    agents.length === 0
      ? h("p", { class: "muted" }, "No agent has connected. Sites run `florist-grpc agent` to join.")
      : table(
          ["Agent", "Connected", "Devices", "Version", "Data root", "Connected at", "Last seen", "Problem"],
          agents.map((a) => [
            h("strong", {}, a.name),
            a.connected
              ? h("span", { class: "badge state-in_progress" }, "connected")
              : h("span", { class: "badge state-cancelled" }, "away"),
            a.devices.join(", ") || "–",
            a.version || "–",
            a.dataRoot || "–",
            when(a.connectTime && timestampDate(a.connectTime)),
            when(a.lastSeenTime && timestampDate(a.lastSeenTime)),
            a.problem || "–",
          ]),
          (i) => ({ "data-agent": agents[i]?.name ?? "" }),
        );
  ctx.main.append(h("div", { class: "page-head" }, h("h1", {}, "Agents")), h("section", { class: "panel" }, body));
}
