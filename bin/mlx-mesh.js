#!/usr/bin/env node
// Entry point: the compiled CLI in dist/ (`npm run build`; `npm ci` and `npm pack` build it).
let cli;
try {
  cli = await import('../dist/src/cli.js');
} catch (err) {
  if (err?.code !== 'ERR_MODULE_NOT_FOUND' || !String(err.message).includes('dist/src/cli.js')) throw err;
  process.stderr.write('mlx-mesh: the compiled CLI is missing (dist/). Run "npm run build" in the mlx-mesh folder.\n');
  process.exit(1);
}
process.exitCode = await cli.main(process.argv.slice(2));
