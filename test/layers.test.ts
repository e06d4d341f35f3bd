// The architecture in one assertion: imports go one way, src → peer → transport, discovery → core.
// Reads every source file's relative imports (static and dynamic) and names each one that goes up.
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT } from './helpers/process.ts';

/** Which folders each folder may import from (besides itself). bench/ starts meshes, so it sits above src/. */
const ALLOWED: Record<string, string[]> = {
  core: [],
  transport: ['core'],
  discovery: ['core'],
  peer: ['core', 'transport', 'discovery'],
  src: ['core', 'transport', 'discovery', 'peer'],
  bench: ['core', 'transport', 'discovery', 'peer', 'src'],
};

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

export function importsOf(text: string): string[] {
  const specs: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s*['"]([^'"]+)['"]/g)) specs.push(m[1]);
  for (const m of text.matchAll(/import\(\s*['"]([^'"]+)['"]\s*\)/g)) specs.push(m[1]);
  return specs.filter((s) => s.startsWith('.'));
}

test('the import scanner sees static, type and dynamic imports', () => {
  const text = `import a from '../peer/x.ts';\nimport type { B } from "./b.ts";\nexport { c } from '../core/c.ts';\nconst d = () => import('../src/d.ts');\nimport fs from 'node:fs';`;
  assert.equal(importsOf(text), ['../peer/x.ts', './b.ts', '../core/c.ts', '../src/d.ts']);
});

test('no folder imports a folder above it', () => {
  const wrong: string[] = [];
  for (const [layer, allowed] of Object.entries(ALLOWED)) {
    const dir = path.join(ROOT, layer);
    if (!fs.existsSync(dir)) continue;
    for (const file of sources(dir)) {
      for (const spec of importsOf(fs.readFileSync(file, 'utf8'))) {
        const target = path.relative(ROOT, path.resolve(path.dirname(file), spec)).split(path.sep)[0];
        // The CLI entry's command table may load any command, the bench command included.
        const entryLoadsCommand = path.relative(ROOT, file) === path.join('src', 'cli.ts') && target === 'bench';
        if (target !== layer && !allowed.includes(target) && !entryLoadsCommand) wrong.push(`${path.relative(ROOT, file)} imports ${spec} (${layer} → ${target})`);
      }
    }
  }
  assert.equal(wrong, [], `imports against the layering:\n${wrong.join('\n')}`);
});

test.run();
