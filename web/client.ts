// The page's side of the worker protocol: `call(req)` posts a Request and resolves with its typed
// result (or rejects with a WorkerFailure); events go to the listeners given to the constructor.

import type { Event, Op, Reply, Request, Results, WorkerError } from './protocol.js';

export class WorkerFailure extends Error {
  constructor(readonly error: WorkerError) { super(error.message); }
  get kind() { return this.error.kind; }
}

export class TrainingWorker {
  private readonly worker: Worker;
  private next = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();

  constructor(url: URL, private readonly onEvent: (e: Event) => void) {
    this.worker = new Worker(url, { type: 'module', name: 'wgtrain' });
    this.worker.onmessage = (ev: MessageEvent<Reply | Event>) => {
      const m = ev.data;
      if ('event' in m) { this.onEvent(m); return; }
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.result); else p.reject(new WorkerFailure(m.error));
    };
    this.worker.onerror = (ev) => {
      // A worker that failed to load or crashed: every pending call fails with the reason.
      const error: WorkerError = { kind: 'internal', message: `the training worker failed: ${ev.message || 'unknown error'}` };
      for (const p of this.pending.values()) p.reject(new WorkerFailure(error));
      this.pending.clear();
    };
  }

  call<R extends Request>(req: R, transfer: Transferable[] = []): Promise<Results[R['op'] & Op]> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ id, req }, transfer);
    });
  }
}
