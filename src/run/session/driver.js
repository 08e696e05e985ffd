// codeexec session driver for JavaScript and TypeScript (CODEEXEC_TS=1: each cell is
// transpiled first): cells run in one global scope, so declarations persist; the
// completion value of a cell is its value. Protocol as in driver.py.
'use strict';
const fs = require('fs');
const vm = require('vm');
const util = require('util');
const ts = process.env.CODEEXEC_TS === '1' ? require('typescript') : null;
globalThis.require = require;
globalThis.module = module;
let pending = Buffer.alloc(0);

function fill() {
  const buf = Buffer.alloc(65536);
  let n;
  for (;;) {
    try { n = fs.readSync(0, buf, 0, buf.length, null); break; } catch (e) { if (e.code !== 'EAGAIN' && e.code !== 'EINTR') throw e; }
  }
  if (n === 0) return false;
  pending = Buffer.concat([pending, buf.subarray(0, n)]);
  return true;
}

function readRequest() {
  let nl;
  while ((nl = pending.indexOf(10)) < 0) if (!fill()) return null;
  const [nonce, timeout, length] = pending.subarray(0, nl).toString().split(' ');
  pending = pending.subarray(nl + 1);
  const len = Number(length);
  while (pending.length < len) if (!fill()) return null;
  const code = pending.subarray(0, len).toString('utf8');
  pending = pending.subarray(len);
  return { nonce, timeout: Number(timeout), code };
}

function writeAll(s) {
  const b = Buffer.from(s);
  let off = 0;
  while (off < b.length) {
    try { off += fs.writeSync(1, b, off); } catch (e) { if (e.code !== 'EAGAIN') throw e; }
  }
}

async function run(req) {
  const res = { status: 'ok', value: null, error: null, display: [] };
  try {
    let code = req.code;
    if (ts) code = ts.transpileModule(code, { compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.None } }).outputText;
    let v = vm.runInThisContext(code, { filename: 'cell', timeout: req.timeout, breakOnSigint: true });
    if (v && typeof v.then === 'function') {
      let timer;
      const limit = new Promise((_, reject) => { timer = setTimeout(() => reject(Object.assign(new Error('cell timed out'), { code: 'ERR_SCRIPT_EXECUTION_TIMEOUT' })), req.timeout); });
      try { v = await Promise.race([v, limit]); } finally { clearTimeout(timer); }
    }
    if (v !== undefined) res.value = util.inspect(v);
  } catch (e) {
    if (e && e.code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') {
      res.status = 'timeout';
    } else {
      res.status = 'error';
      const name = e && e.name ? e.name : 'Error';
      res.error = { name, message: e && e.message !== undefined ? String(e.message) : String(e) };
      process.stderr.write((e && e.stack ? e.stack : String(e)) + '\n');
    }
  }
  return res;
}

async function main() {
  for (;;) {
    const req = readRequest();
    if (!req) return;
    const res = await run(req);
    await new Promise((r) => setImmediate(r));
    writeAll('\x1e' + req.nonce + JSON.stringify(res) + '\n');
  }
}

main().then(() => process.exit(0));
