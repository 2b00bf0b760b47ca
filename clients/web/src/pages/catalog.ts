// What jobs may name: models, strategies (with the client types each accepts) and optimizers.
import { h } from "../dom.js";
import { type PageContext, table } from "../page.js";

export function catalogPage(ctx: PageContext): void {
  const { models, strategies, optimizers } = ctx.catalog;
  ctx.main.append(
    h("div", { class: "page-head" }, h("h1", {}, "Catalog")),
    h(
      "section",
      { class: "panel" },
      h("h2", {}, "Models"),
      table(
        ["Name", "Description", "Input shape", "Classes", "Source"],
        models.map((m) => [
          h("code", {}, m.name),
          m.description,
          m.inputShape.length > 0 ? m.inputShape.join(" × ") : "from the data",
          m.numClasses > 0 ? String(m.numClasses) : "from the data",
          m.source,
        ]),
      ),
    ),
    h(
      "section",
      { class: "panel" },
      h("h2", {}, "Strategies"),
      table(
        ["Name", "Description", "Client types"],
        strategies.map((s) => [h("code", {}, s.name), s.description, s.clientTypes.join(", ")]),
      ),
    ),
    h(
      "section",
      { class: "panel" },
      h("h2", {}, "Optimizers"),
      table(["Name", "Description"], optimizers.map((o) => [h("code", {}, o.name), o.description])),
    ),
  );
}
