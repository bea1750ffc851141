// IndexedDB persistence of the current run, so a reload (or a crashed tab) resumes training: the
// latest checkpoint after every epoch, plus what is needed to rebuild the run around it — the model
// file and the images (or a note that they are the bundled demo ones).
//
//   database 'wgtrain', object store 'run':
//     'source'      { model: SavedModel, data: SavedData }     written when a run starts
//     'checkpoint'  { bytes: Uint8Array, savedAt }              written after every epoch
//   object store 'autotune': one TuneTable per adapter name (src/gpu/tune.ts), kept across runs
//     (clearing the run leaves it).
//
// Blobs (File objects) are stored as they are: IndexedDB keeps them without copying into memory.

import type { TuneStore, TuneTable } from '../src/gpu/tune.js';

export type SavedModel = { demo: true; name: string } | { demo: false; name: string; bytes: Blob };
export type SavedData = { demo: true } | { demo: false; root: string; files: [string, Blob][] };

export interface SavedSource { model: SavedModel; data: SavedData }
export interface SavedCheckpoint { bytes: Uint8Array; savedAt: string }

const DB = 'wgtrain';
const STORE = 'run';
const TUNE = 'autotune';

function open(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    // Version 2 added the 'autotune' store; an upgrade from 1 keeps the run.
    const req = indexedDB.open(DB, 2);
    req.onupgradeneeded = () => {
      for (const name of [STORE, TUNE]) if (!req.result.objectStoreNames.contains(name)) req.result.createObjectStore(name);
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error('IndexedDB open failed'));
  });
}

async function tx<T>(mode: IDBTransactionMode, fn: (s: IDBObjectStore) => IDBRequest | void, name = STORE): Promise<T | undefined> {
  const db = await open();
  try {
    return await new Promise<T | undefined>((resolve, reject) => {
      const t = db.transaction(name, mode);
      const req = fn(t.objectStore(name));
      // NOTE: resolve on the transaction's completion, not the request's success: only then is a
      // write durable (a reload right after would otherwise find the old checkpoint).
      t.oncomplete = () => resolve(req ? (req.result as T) : undefined);
      t.onerror = () => reject(t.error ?? new Error('IndexedDB transaction failed'));
      t.onabort = () => reject(t.error ?? new Error('IndexedDB transaction aborted (storage quota?)'));
    });
  } finally {
    db.close();
  }
}

export const store = {
  saveSource: (s: SavedSource) => tx<void>('readwrite', (st) => { st.put(s, 'source'); st.delete('checkpoint'); }),
  saveCheckpoint: (c: SavedCheckpoint) => tx<void>('readwrite', (st) => st.put(c, 'checkpoint')),
  source: () => tx<SavedSource>('readonly', (st) => st.get('source')),
  checkpoint: () => tx<SavedCheckpoint>('readonly', (st) => st.get('checkpoint')),
  clear: () => tx<void>('readwrite', (st) => st.clear()),
};

/** The autotuner's table in IndexedDB (the browser's counterpart of data/node.ts fileTuneStore). */
export function idbTuneStore(): TuneStore {
  return {
    where: 'IndexedDB (wgtrain/autotune)',
    async load(adapter) {
      const t = await tx<TuneTable>('readonly', (st) => st.get(adapter), TUNE).catch(() => undefined);
      return t && t.schema === 1 && t.adapter === adapter ? t : null;
    },
    save: (table) => tx<void>('readwrite', (st) => st.put(table, table.adapter), TUNE),
  };
}

/** Whether this context has IndexedDB (a private window may not). */
export function hasIndexedDb(): boolean {
  return typeof indexedDB !== 'undefined';
}
