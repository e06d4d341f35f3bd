// A hand-written SVG bar chart of ratios, with the parity line at 1.0: what `--chart` writes.
import fs from 'node:fs';

export interface Bar {
  label: string;
  value: number;
  /** Which side of 1.0 is good (colours the bar); default higher. */
  better?: 'higher' | 'lower';
}

const escape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function ratioChartSvg(title: string, bars: Bar[]): string {
  const rowH = 28;
  const left = 280;
  const width = 720;
  const plotW = width - left - 60;
  const top = 44;
  const height = top + bars.length * rowH + 30;
  const max = Math.max(1.2, ...bars.map((b) => (Number.isFinite(b.value) ? b.value : 0))) * 1.1;
  const x = (v: number) => left + (Math.max(0, v) / max) * plotW;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="13">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="${left}" y="24" font-size="15" font-weight="600">${escape(title)}</text>`,
  ];
  bars.forEach((b, i) => {
    const y = top + i * rowH;
    const good = b.better === 'lower' ? b.value <= 1 : b.value >= 1;
    parts.push(
      `<text x="${left - 8}" y="${y + 17}" text-anchor="end">${escape(b.label)}</text>`,
      `<rect x="${left}" y="${y + 4}" width="${(x(b.value) - left).toFixed(1)}" height="${rowH - 10}" fill="${good ? '#2f7d4f' : '#b5523b'}"/>`,
      `<text x="${(x(b.value) + 6).toFixed(1)}" y="${y + 17}">${Number.isFinite(b.value) ? b.value.toFixed(2) : '–'}×</text>`,
    );
  });
  const one = x(1).toFixed(1);
  parts.push(
    `<line x1="${one}" y1="${top - 4}" x2="${one}" y2="${top + bars.length * rowH}" stroke="#333" stroke-dasharray="4 3"/>`,
    `<text x="${one}" y="${height - 10}" text-anchor="middle" fill="#333">1.0 (parity)</text>`,
    '</svg>',
  );
  return `${parts.join('\n')}\n`;
}

export function writeRatioChart(file: string, title: string, bars: Bar[]): void {
  fs.writeFileSync(file, ratioChartSvg(title, bars));
}
