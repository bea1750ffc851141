// Serves the built browser app (dist/web/, see build-web.mjs) on localhost and prints its URL.
//
//   node scripts/serve-web.mjs [--port 8080] [--dir dist/web]      (--port 0: any free port)
//
// Static files only: the app needs no server logic. WebGPU needs a secure context, which
// http://localhost and http://127.0.0.1 are. The first line printed is the URL (tests read it).

import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name, dflt) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : dflt; };
const dir = resolve(root, arg('--dir', 'dist/web'));
const port = Number(arg('--port', process.env.PORT ?? '8080'));
const host = '127.0.0.1';

if (!existsSync(join(dir, 'index.html'))) {
  console.error(`serve-web: ${dir} has no index.html: build the site first (node scripts/build-web.mjs)`);
  process.exit(1);
}

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.json': 'application/json', '.map': 'application/json', '.svg': 'image/svg+xml', '.png': 'image/png',
  '.jpg': 'image/jpeg', '.onnx': 'application/octet-stream', '.bin': 'application/octet-stream',
};

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', `http://${host}`);
  let path = decodeURIComponent(url.pathname);
  if (path.endsWith('/')) path += 'index.html';
  const file = normalize(join(dir, path));
  // Never outside the site folder.
  if (!(file === dir || file.startsWith(dir + sep)) || !existsSync(file) || !statSync(file).isFile()) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    return;
  }
  res.writeHead(200, {
    'content-type': TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
    'content-length': statSync(file).size,
    'cache-control': 'no-cache',
  });
  createReadStream(file).pipe(res);
});

server.listen(port, host, () => {
  const { port: p } = server.address();
  console.log(`http://${host}:${p}/`);
  console.error(`serving ${dir} (Ctrl-C stops; open the URL in a browser with WebGPU, e.g. Chrome or Edge)`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { server.close(() => process.exit(0)); server.closeAllConnections(); });
