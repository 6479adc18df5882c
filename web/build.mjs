// Builds the web client into web/dist (committed, so `cargo build` needs no Node): app.js and
// app.css bundled and minified by esbuild, index.html and favicon.svg copied. The output is the
// same bytes for the same sources and package-lock.json, which CI checks (scripts/web-test.sh).
// `--tests` instead bundles web/tests/unit/*.test.ts into target/web-unit for `node --test`.

import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const web = dirname(fileURLToPath(import.meta.url));
const common = { bundle: true, target: 'es2022', jsx: 'automatic', jsxImportSource: 'preact', logLevel: 'warning', legalComments: 'none' };

if (process.argv.includes('--tests')) {
  const out = join(web, '../target/web-unit');
  rmSync(out, { recursive: true, force: true });
  const dir = join(web, 'tests/unit');
  const entryPoints = readdirSync(dir).filter((f) => f.endsWith('.test.ts')).map((f) => join(dir, f));
  await build({ ...common, entryPoints, outdir: out, outExtension: { '.js': '.mjs' }, format: 'esm', platform: 'node' });
} else {
  const dist = join(web, 'dist');
  rmSync(dist, { recursive: true, force: true });
  mkdirSync(dist);
  const options = { ...common, outdir: dist, format: 'esm', minify: true, charset: 'utf8' };
  await build({ ...options, entryPoints: { app: join(web, 'src/main.tsx') } });
  await build({ ...options, entryPoints: { app: join(web, 'src/styles.css') } });
  for (const file of ['index.html', 'favicon.svg']) copyFileSync(join(web, 'src', file), join(dist, file));
  // libolm's WebAssembly, served by `iris serve` as /olm.wasm (loaded by src/e2e.ts).
  copyFileSync(join(web, 'node_modules/@towns-protocol/olm/olm.wasm'), join(dist, 'olm.wasm'));
}
