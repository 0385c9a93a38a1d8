// Labels live in IndexedDB, written (and committed) the moment they are given, so a reload or
// a crash loses nothing. Each record is a lab Label: {prompt, left, right, choice, labeller},
// plus when it was given.
const DB = 'alignlab';
const VERSION = 1;

function request(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error('the label store refused the write'));
  });
}

export async function openStore() {
  const open = indexedDB.open(DB, VERSION);
  open.onupgradeneeded = () => {
    const db = open.result;
    db.createObjectStore('labels', { keyPath: 'key', autoIncrement: true });
    db.createObjectStore('meta');
  };
  const db = await request(open);
  return {
    async all() {
      return request(db.transaction('labels').objectStore('labels').getAll());
    },
    async add(label) {
      const tx = db.transaction('labels', 'readwrite');
      const key = await request(tx.objectStore('labels').add({ ...label, time: Date.now() }));
      await done(tx);
      return key;
    },
    // Several labels in one transaction: all are written or none.
    async addAll(labels) {
      const tx = db.transaction('labels', 'readwrite');
      const store = tx.objectStore('labels');
      for (const label of labels) store.add({ ...label, time: Date.now() });
      await done(tx);
    },
    async removeLast() {
      const tx = db.transaction('labels', 'readwrite');
      const cursor = await request(tx.objectStore('labels').openCursor(null, 'prev'));
      let removed = null;
      if (cursor) {
        removed = cursor.value;
        cursor.delete();
      }
      await done(tx);
      return removed;
    },
    async getMeta(name, fallback) {
      const value = await request(db.transaction('meta').objectStore('meta').get(name));
      return value === undefined ? fallback : value;
    },
    async setMeta(name, value) {
      const tx = db.transaction('meta', 'readwrite');
      tx.objectStore('meta').put(value, name);
      await done(tx);
    },
  };
}
