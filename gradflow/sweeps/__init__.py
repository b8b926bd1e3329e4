"""The one runner for many solves (`gf.sweep`): batched, sharded, resumable; its result, the store
with its checksums and locks, point keys, fingerprints, the distributed split, JSON at the
store's edge, and the alpha sweep with its rate fits. Private modules, re-exported as `gf.*`."""
