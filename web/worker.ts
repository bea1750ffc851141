// The training worker: receives Requests (protocol.ts), runs them on the Session, answers each once,
// and streams Events (progress, epochs, logs). All GPU work happens here, off the page's thread.

import type { Event, Reply, Request } from './protocol.js';
import { classify, Session } from './session.js';

// NOTE: the project compiles with the DOM library only, where `self` is a Window; in a dedicated
// worker it is a DedicatedWorkerGlobalScope, whose postMessage takes a transfer list.
const scope = self as unknown as {
  postMessage(message: unknown, transfer?: Transferable[]): void;
  onmessage: ((ev: MessageEvent<{ id: number; req: Request }>) => void) | null;
};


const post = (m: Reply | Event, transfer: Transferable[] = []) => scope.postMessage(m, transfer);
const session = new Session((e) => post(e));

/**
 * A copy of the bytes in an ArrayBuffer of its own, to transfer to the page. NOTE: always a copy:
 * transferring detaches the buffer, and the session keeps its checkpoint bytes.
 */
function own(b: Uint8Array): ArrayBuffer {
  return b.slice().buffer as ArrayBuffer;
}

async function handle(req: Request): Promise<{ result: unknown; transfer?: Transferable[] }> {
  switch (req.op) {
    case 'init': return { result: await session.init() };
    case 'loadModel': return { result: await session.loadModel(req) };
    case 'loadData': return { result: await session.loadData(req) };
    case 'split': return { result: session.makeSplit(req.valSplit, req.seed, req.perClass) };
    case 'lrFind': return { result: await session.lrFind(req.settings, req.numIt) };
    case 'train': return { result: await session.train(req.settings) };
    case 'resume': return { result: await session.resume() };
    case 'pause': return { result: session.pause() };
    case 'continue': return { result: session.continue() };
    case 'stop': return { result: session.stop() };
    case 'pauseAtEpochEnd': return { result: session.setPauseAtEpochEnd(req.on) };
    case 'predict': return { result: await session.predict(req.bytes) };
    case 'forward': { const r = await session.forward(req.x, req.shape); return { result: r, transfer: [r.logits.buffer] }; }
    case 'preprocess': { const r = await session.preprocess(req.paths); return { result: r, transfer: [r.x.buffer] }; }
    case 'exportOnnx': { const b = own(await session.exportOnnx()); return { result: { bytes: b }, transfer: [b] }; }
    case 'checkpoint': { const c = session.checkpoint(); const b = own(c.bytes); return { result: { bytes: b, split: c.split }, transfer: [b] }; }
    case 'importCheckpoint': return { result: await session.importCheckpoint(new Uint8Array(req.bytes), 'imported') };
    case 'savedRun': return { result: await session.savedRun() };
    case 'restoreSaved': return { result: await session.restoreSaved() };
    case 'discardSaved': return { result: await session.discardSaved() };
    default: return req satisfies never;
  }
}

scope.onmessage = (ev) => {
  const { id, req } = ev.data;
  handle(req).then(
    ({ result, transfer }) => post({ id, ok: true, result }, transfer),
    (e: unknown) => {
      const error = classify(e);
      if (error.kind === 'internal') console.error(e);
      post({ id, ok: false, error });
    },
  );
};
