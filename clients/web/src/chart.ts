// A learning curve as an inline SVG line chart: one line per source (the server's aggregate and each client),
// one dot per round. Drawn in the DOM (not a canvas) so that every point is an element a screen reader can name
// and a test can count: <svg data-metric=M>, <g data-series=S>, <circle data-round=R>.
import { svg, h } from "./dom.js";

export interface Series {
  readonly key: string; // "aggregated", "client0", ...
  readonly label: string;
  readonly points: readonly (readonly [round: number, value: number | undefined])[];
}

const WIDTH = 360;
const HEIGHT = 200;
const MARGIN = { top: 12, right: 14, bottom: 28, left: 54 };
const COLORS = ["#1f4e9a", "#d9822b", "#2e9e5b", "#b23a48", "#7a4fbf", "#3b8ea5", "#8c6d1f", "#c2185b"];

export function seriesColor(index: number): string {
  return COLORS[index % COLORS.length] ?? "#333";
}

function ticks(min: number, max: number, count: number): number[] {
  if (min === max) {
    return [min];
  }
  const step = (max - min) / count;
  return Array.from({ length: count + 1 }, (_, i) => min + i * step);
}

function label(value: number): string {
  const magnitude = Math.abs(value);
  return magnitude !== 0 && (magnitude < 0.01 || magnitude >= 10_000) ? value.toExponential(1) : value.toFixed(3);
}

/** The chart of one metric; `rounds` is how many rounds the job runs (the x axis spans them from the start). */
export function lineChart(metric: string, title: string, series: readonly Series[], rounds: number): HTMLElement {
  const finite = series.flatMap((s) => s.points.map(([, v]) => v)).filter((v): v is number => Number.isFinite(v));
  const lastRound = Math.max(rounds, 1, ...series.flatMap((s) => s.points.map(([r]) => r)));
  let low = finite.length > 0 ? Math.min(...finite) : 0;
  let high = finite.length > 0 ? Math.max(...finite) : 1;
  if (low === high) {
    [low, high] = [low - 0.5, high + 0.5];
  }
  const innerWidth = WIDTH - MARGIN.left - MARGIN.right;
  const innerHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const x = (round: number): number =>
    MARGIN.left + (lastRound === 1 ? innerWidth / 2 : ((round - 1) / (lastRound - 1)) * innerWidth);
  const y = (value: number): number => MARGIN.top + (1 - (value - low) / (high - low)) * innerHeight;

  const chart = svg("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: "img",
    "aria-label": title,
    "data-metric": metric,
    class: "chart",
  });
  for (const tick of ticks(low, high, 4)) {
    chart.append(
      svg("line", { x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y(tick), y2: y(tick), class: "grid" }),
      svg("text", { x: MARGIN.left - 6, y: y(tick) + 4, class: "tick", "text-anchor": "end" }, label(tick)),
    );
  }
  const roundTicks =
    lastRound <= 12 ? Array.from({ length: lastRound }, (_, i) => i + 1) : ticks(1, lastRound, 6).map(Math.round);
  for (const round of roundTicks) {
    chart.append(svg("text", { x: x(round), y: HEIGHT - 8, class: "tick", "text-anchor": "middle" }, round));
  }
  series.forEach((s, index) => {
    const color = seriesColor(index);
    const points = s.points.filter((p): p is readonly [number, number] => Number.isFinite(p[1]));
    const group = svg("g", { "data-series": s.key, class: s.key === "aggregated" ? "series aggregated" : "series" });
    if (points.length > 1) {
      const path = points.map(([r, v]) => `${x(r).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
      group.append(svg("polyline", { points: path, fill: "none", stroke: color }));
    }
    for (const [round, value] of points) {
      group.append(
        svg(
          "circle",
          { cx: x(round).toFixed(1), cy: y(value).toFixed(1), r: 3.5, fill: color, "data-round": round },
          svg("title", {}, `${s.label}, round ${round}: ${value}`),
        ),
      );
    }
    chart.append(group);
  });
  const legend = h(
    "ul",
    { class: "legend" },
    ...series.map((s, index) => {
      const swatch = h("span", { class: "swatch" });
      swatch.style.background = seriesColor(index); // CSSOM, which the page's CSP allows (a style attribute is not)
      return h("li", {}, swatch, s.label);
    }),
  );
  return h("figure", { class: "chart-box" }, h("figcaption", {}, title), chart, legend);
}
