// A small line chart drawn as SVG: no library, no canvas (so the DOM says what it shows).

const NS = "http://www.w3.org/2000/svg";

function el(name, attributes) {
  const node = document.createElementNS(NS, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  return node;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * magnitude >= value) return step * magnitude;
  return 10 * magnitude;
}

/**
 * Draws `values` (numbers, oldest first) into `svg` (its viewBox sets the drawing size) as an area under a line,
 * with the y scale's top on the left. `label` names one value for the tooltip of the last point.
 */
export function drawLineChart(svg, values, { label = "", pad = 4 } = {}) {
  // Drawn in the element's own pixels (the viewBox follows its laid-out size), so text and strokes keep their
  // size whatever the width; the viewBox the markup gives is the size used before layout.
  const rect = svg.getBoundingClientRect();
  const width = Math.round(rect.width) || svg.viewBox.baseVal.width;
  const height = Math.round(rect.height) || svg.viewBox.baseVal.height;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const left = 34;
  svg.replaceChildren();
  const top = niceMax(Math.max(0, ...values));
  svg.append(el("line", { x1: left, y1: pad, x2: width, y2: pad, class: "grid" }));
  svg.append(el("line", { x1: left, y1: height - pad, x2: width, y2: height - pad, class: "axis" }));
  const topLabel = el("text", { x: left - 4, y: pad + 9, class: "tick", "text-anchor": "end" });
  topLabel.textContent = String(Number(top.toPrecision(3)));
  const zeroLabel = el("text", { x: left - 4, y: height - pad, class: "tick", "text-anchor": "end" });
  zeroLabel.textContent = "0";
  svg.append(topLabel, zeroLabel);
  svg.dataset.points = String(values.length);
  if (values.length < 2) return;
  const x = (i) => left + ((width - left) * i) / (values.length - 1);
  const y = (v) => height - pad - ((height - 2 * pad) * Math.max(0, v)) / top;
  const line = values.map((v, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  svg.append(el("path", { d: `${line} L${x(values.length - 1)},${height - pad} L${left},${height - pad} Z`, class: "area" }));
  svg.append(el("path", { d: line, class: "line" }));
  const last = values[values.length - 1];
  const dot = el("circle", { cx: x(values.length - 1), cy: y(last), r: 3, class: "dot" });
  const title = el("title", {});
  title.textContent = `${last} ${label}`;
  dot.append(title);
  svg.append(dot);
}
