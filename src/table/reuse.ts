// Reuse across reloads, one component at a time. Each component of a compiled route or upstream (the
// connection pool, the retry policy, the hash key, the rewrite; next each limiter, the breaker, the health
// checker, the tracing settings) is built from its own slice of the config, and that slice's JSON is its
// key: a rebuild whose slice is unchanged keeps the component object and so its state (connections,
// counters, breaker state), whatever else changed around it.

/** The reuse key of a config slice: its JSON (config values are plain data, key order as parsed). */
export function settingsKey(settings: unknown): string {
  return settings === undefined ? '' : JSON.stringify(settings)
}

/** A built component and the key of the settings it was built from. */
export interface Keyed<T> {
  readonly key: string
  readonly value: T
}

/** `prev` when its key equals that of `settings`, else a fresh component from `build`. */
export function reuse<T>(prev: Keyed<T> | undefined, settings: unknown, build: () => T): Keyed<T> {
  const key = settingsKey(settings)
  if (prev !== undefined && prev.key === key) return prev
  return { key, value: build() }
}
