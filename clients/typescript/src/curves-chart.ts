// Learning curves drawn as a PNG: validation loss and accuracy per round, the server's aggregate as a thick line
// and each client's own as a thin dashed one (what `florist-grpc plot` draws with matplotlib). The chart is a
// Vega-Lite spec, rendered to SVG by Vega's headless view (no browser, no canvas) and rasterised by resvg, whose
// prebuilt binary comes from the npm registry as an optional dependency: nothing is compiled or downloaded at
// install time.
import { Resvg } from "@resvg/resvg-js";
import { parse, View } from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
// Vega-Lite exports the types of a spec's parts only under this path; they are types only, nothing runs from it.
import type { Field } from "vega-lite/types_unstable/channeldef.js";
import type { LayerSpec } from "vega-lite/types_unstable/spec/layer.js";
import type { RoundRow, RoundValues } from "./curves.js";

/** One point of one curve, in the long form Vega-Lite plots. */
interface CurvePoint {
  readonly round: number;
  readonly source: string;
  readonly metric: Metric;
  readonly value: number;
}

type Metric = "loss" | "accuracy";

const AGGREGATED = "aggregated";
const PANEL_WIDTH = 440;
const PANEL_HEIGHT = 300;
// Rendered at twice the SVG's size: legible on high-density screens and when zoomed in a report.
const PIXEL_RATIO = 2;
// DejaVu and Liberation ship with most Linux systems, Arial/Helvetica elsewhere: resvg takes the first one it
// finds among the system fonts (text is left out, lines still drawn, where there is none).
const FONT = "DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif";

/** The PNG bytes of the learning curves of `rows` (one row per round), titled `title`. */
export async function drawCurves(rows: readonly RoundRow[], title: string): Promise<Buffer> {
  const view = new View(parse(compile(curvesSpec(rows, title)).spec), { renderer: "none" });
  try {
    const svg = await view.toSVG();
    const png = new Resvg(svg, { fitTo: { mode: "zoom", value: PIXEL_RATIO }, background: "white" }).render();
    return png.asPng();
  } finally {
    view.finalize(); // Vega's view holds timers and listeners until finalized
  }
}

/** The Vega-Lite spec: two panels side by side (loss, accuracy), one colour per source shared by both. */
export function curvesSpec(rows: readonly RoundRow[], title: string): TopLevelSpec {
  const points = curvePoints(rows);
  const sources = [AGGREGATED, ...(rows[0]?.clients.map((_, index) => clientName(index)) ?? [])];
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: { text: title, anchor: "middle" },
    background: "white",
    config: { font: FONT },
    data: { values: points },
    hconcat: [panel("loss", "validation loss", sources), panel("accuracy", "validation accuracy", sources)],
  };
}

function panel(metric: Metric, label: string, sources: string[]): LayerSpec<Field> {
  const encoding = {
    x: { field: "round", type: "quantitative", title: "round", axis: { tickMinStep: 1, format: "d" } },
    y: { field: "value", type: "quantitative", title: label, scale: { zero: false } },
    color: { field: "source", type: "nominal", title: null, sort: sources, scale: { domain: sources } },
  } as const;
  return {
    width: PANEL_WIDTH,
    height: PANEL_HEIGHT,
    transform: [{ filter: { field: "metric", equal: metric } }],
    layer: [
      {
        transform: [{ filter: { field: "source", equal: AGGREGATED } }],
        mark: { type: "line", point: true, strokeWidth: 3 },
        encoding,
      },
      {
        transform: [{ filter: { field: "source", oneOf: sources.filter((s) => s !== AGGREGATED) } }],
        mark: { type: "line", point: { size: 20 }, strokeWidth: 1.5, strokeDash: [5, 3] },
        encoding,
      },
    ],
  };
}

function clientName(index: number): string {
  return `client ${index}`;
}

/**
 * Every finite value as one point. NaN and ±Infinity (a diverging run) have no place on an axis: they are left out,
 * so the curve stops where the run diverged.
 */
function curvePoints(rows: readonly RoundRow[]): CurvePoint[] {
  const points: CurvePoint[] = [];
  const add = (round: number, source: string, values: RoundValues): void => {
    for (const [metric, value] of [
      ["loss", values.valLoss],
      ["accuracy", values.valAccuracy],
    ] as const) {
      if (value !== undefined && Number.isFinite(value)) {
        points.push({ round, source, metric, value });
      }
    }
  };
  for (const row of rows) {
    add(row.round, AGGREGATED, row);
    row.clients.forEach((values, index) => add(row.round, clientName(index), values));
  }
  return points;
}
