// IndexedDB persistence of the current run, so a reload (or a crashed tab) resumes training: the
// latest checkpoint after every epoch, plus what is needed to rebuild the run around it — the model
// file and the images (or a note that they are the bundled demo ones).
//
//   database 'wgtrain', object store 'run':
//     'source'      { model: SavedModel, data: SavedData }     written when a run starts
//     'checkpoint'  { bytes: Uint8Array, savedAt }              written after every epoch
//
// Blobs (File objects) are stored as they are: IndexedDB keeps them without copying into memory.

export type SavedModel = { demo: true; name: string } | { demo: false; name: string; bytes: Blob };
export type SavedData = { demo: true } | { demo: false; root: string; files: [string, Blob][] };

export interface SavedSource { model: SavedModel; data: SavedData }
export interface SavedCheckpoint { bytes: Uint8Array; savedAt: string }

const DB = 'wgtrain';
const STORE = 'run';

function open(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => { req.result.createObjectStore(STORE); };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error('IndexedDB open failed'));
  });
}

async function tx<T>(mode: IDBTransactionMode, fn: (s: IDBObjectStore) => IDBRequest | void): Promise<T | undefined> {
  const db = await open();
  try {
    return await new Promise<T | undefined>((resolve, reject) => {
      const t = db.transaction(STORE, mode);
      const req = fn(t.objectStore(STORE));
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

/** Whether this context has IndexedDB (a private window may not). */
export function hasIndexedDb(): boolean {
  return typeof indexedDB !== 'undefined';
}
