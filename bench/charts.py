"""SVG charts of a benchmark run, written with the standard library only (no plotting package to install).

bench.py calls write_charts() with the same result the Markdown tables come from; run it alone to redraw the charts
of an earlier run:  python3 bench/charts.py target/bench/result.json target/bench/latencies.json docs/
"""

import json
import math
import sys
from pathlib import Path
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 640, 360
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 40, 60
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]


def _svg(title, body, legend):
    items = []
    x = LEFT + 10
    for i, name in enumerate(legend):
        items.append(f'<rect x="{x}" y="{HEIGHT - 22}" width="12" height="12" fill="{COLOURS[i % 4]}"/>'
                     f'<text x="{x + 18}" y="{HEIGHT - 12}">{escape(name)}</text>')
        x += 40 + 7 * len(name)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">\n'
            f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>\n'
            f'<text x="{WIDTH / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>\n'
            + "\n".join(body) + "\n" + "".join(items) + "\n</svg>\n")


def _ticks(top):
    """About five round ticks from 0 to at least top."""
    if top <= 0:
        return [0, 1]
    step = 10 ** math.floor(math.log10(top / 5))
    for m in (1, 2, 5, 10):
        if top / (step * m) <= 6:
            step *= m
            break
    return [step * i for i in range(int(math.ceil(top / step)) + 1)]


def _fmt(v):
    return f"{v:,.0f}" if abs(v) >= 10 or v == 0 else f"{v:g}"


def _label(v):
    """A bar's value, three significant digits without an exponent: 0.333, 9.48, 232, 1,230."""
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _nice(x):
    """The smallest of 1, 2, 5 times a power of ten that is at least x."""
    if x <= 0:
        return 1
    power = 10 ** math.floor(math.log10(x))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= x)


def _axes(ticks, ylabel, xlabel):
    plot_h = HEIGHT - TOP - BOTTOM
    body = [f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}" stroke="black"/>',
            f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}" stroke="black"/>',
            f'<text transform="translate(16 {TOP + plot_h / 2}) rotate(-90)" text-anchor="middle">'
            f'{escape(ylabel)}</text>',
            f'<text x="{LEFT + (WIDTH - LEFT - RIGHT) / 2}" y="{HEIGHT - 30}" text-anchor="middle">'
            f'{escape(xlabel)}</text>']
    for t in ticks:
        y = HEIGHT - BOTTOM - t / ticks[-1] * plot_h
        body.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#ddd"/>'
                    f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    return body


def line_chart(title, xlabel, ylabel, series):
    """series: {name: [(x, y), ...]} with x > 0, drawn on a log10 x axis (partition counts span decades)."""
    xs = [x for points in series.values() for x, _ in points]
    ys = [y for points in series.values() for _, y in points]
    ticks = _ticks(max(ys, default=1) * 1.1)
    lo, hi = math.log10(min(xs, default=1)), math.log10(max(xs, default=10))
    hi = hi if hi > lo else lo + 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT - 20, HEIGHT - TOP - BOTTOM
    px = lambda x: LEFT + 10 + (math.log10(x) - lo) / (hi - lo) * plot_w  # noqa: E731
    py = lambda y: HEIGHT - BOTTOM - y / ticks[-1] * plot_h  # noqa: E731
    body = _axes(ticks, ylabel, xlabel)
    for x in sorted(set(xs)):
        body.append(f'<text x="{px(x):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{x:,}</text>')
    for i, (name, points) in enumerate(series.items()):
        points = sorted(points)
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        body.append(f'<polyline points="{path}" fill="none" stroke="{COLOURS[i % 4]}" stroke-width="2"/>')
        for x, y in points:
            body.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{COLOURS[i % 4]}">'
                        f'<title>{escape(name)}: {x:,} partitions, {y:.3g}</title></circle>')
    return _svg(title, body, list(series))


def bar_chart(title, ylabel, groups, names):
    """groups: [(label, [value per name])]; each group's bars side by side, the value written on top."""
    top = max((v for _, values in groups for v in values), default=1)
    ticks = _ticks(top * 1.15)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    body = _axes(ticks, ylabel, "")
    slot = plot_w / max(1, len(groups))
    bar = slot * 0.7 / max(1, len(names))
    for g, (label, values) in enumerate(groups):
        x0 = LEFT + g * slot + slot * 0.15
        body.append(f'<text x="{LEFT + g * slot + slot / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" '
                    f'text-anchor="middle">{escape(label)}</text>')
        for i, v in enumerate(values):
            h = v / ticks[-1] * plot_h
            x = x0 + i * bar
            body.append(f'<rect x="{x:.1f}" y="{HEIGHT - BOTTOM - h:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" '
                        f'fill="{COLOURS[i % 4]}"><title>{escape(names[i])}: {v:.4g}</title></rect>'
                        f'<text x="{x + bar / 2:.1f}" y="{HEIGHT - BOTTOM - h - 4:.1f}" text-anchor="middle">'
                        f'{_label(v)}</text>')
    return _svg(title, body, names)


def histogram(title, xlabel, samples, bins=20):
    """samples: {name: [value, ...]}; the share of each series per bin, bars of the series side by side."""
    values = [v for s in samples.values() for v in s]
    if not values:
        return _svg(title, ['<text x="320" y="180" text-anchor="middle">no samples</text>'], [])
    hi = max(values)
    width = max(1, _nice(hi / bins))
    bins = int(hi // width) + 1
    counts = {name: [0] * bins for name in samples}
    for name, s in samples.items():
        for v in s:
            counts[name][min(bins - 1, int(max(0, v) // width))] += 1
    shares = {name: [c / max(1, len(samples[name])) * 100 for c in cs] for name, cs in counts.items()}
    ticks = _ticks(max(max(s) for s in shares.values()) * 1.1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    body = _axes(ticks, "share of events (%)", xlabel)
    slot = plot_w / bins
    bar = slot * 0.9 / max(1, len(samples))
    for b in range(bins):
        if b % max(1, bins // 5) == 0:
            body.append(f'<text x="{LEFT + b * slot:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
                        f'{_fmt(b * width)}</text>')
        for i, name in enumerate(samples):
            h = shares[name][b] / ticks[-1] * plot_h
            body.append(f'<rect x="{LEFT + b * slot + i * bar:.1f}" y="{HEIGHT - BOTTOM - h:.1f}" '
                        f'width="{bar:.1f}" height="{h:.1f}" fill="{COLOURS[i % 4]}"/>')
    return _svg(title, body, list(samples))


def write_charts(result, latencies, out_dir):
    """Writes the four charts of one run into out_dir; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    charts = {}
    by_mode = {}
    for row in result["scale"]:
        if row.get("ready_s") is not None:
            by_mode.setdefault(row["reads"], []).append(row)
    charts["bench-cpu.svg"] = line_chart(
        "Sidecar CPU against partitions watched (idle topics, 1 s polling)", "partitions watched",
        "CPU, % of one core",
        {f"watermark reads {mode}": [(r["partitions"], r["cpu_share"] * 100) for r in rows]
         for mode, rows in by_mode.items()})
    charts["bench-rss.svg"] = line_chart(
        "Sidecar memory against partitions watched", "partitions watched", "RSS, MB",
        {f"watermark reads {mode}": [(r["partitions"], r["rss_kb"] / 1024) for r in rows]
         for mode, rows in by_mode.items()})
    s = result["side_by_side"]["rows"]
    side, base = s["sidecar"], s["baseline"]
    charts["bench-vs-baseline.svg"] = bar_chart(
        f"Sidecar against the consume-everything baseline ({result['side_by_side']['events']:,} events)",
        "value", [
            ("CPU s per million events", [side["cpu_s_per_million"], base["cpu_s_per_million"]]),
            ("MB from broker per million", [side["bytes_in_per_million"] / 1e6, base["bytes_in_per_million"] / 1e6]),
            ("peak RSS, MB", [side["peak_rss_kb"] / 1024, base["peak_rss_kb"] / 1024]),
        ], ["sidecar", "baseline"])
    charts["bench-latency.svg"] = histogram(
        "Detection latency: change produced to change seen", "milliseconds",
        {name: latencies.get(name, []) for name in ("sidecar", "baseline")})
    paths = []
    for name, svg in charts.items():
        path = out / name
        path.write_text(svg)
        paths.append(path)
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    for p in write_charts(json.loads(Path(sys.argv[1]).read_text()), json.loads(Path(sys.argv[2]).read_text()),
                          sys.argv[3]):
        print(p)
