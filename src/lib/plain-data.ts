// Config values are plain data (YAML and JSON: mappings, lists, scalars). Loaded config is frozen all the
// way down: a module that tried to change it at run time would throw instead of changing what every other
// holder of the object sees.

/** Freezes `value` and everything reachable from it; already frozen objects are not walked again. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const child of Object.values(value)) deepFreeze(child)
  }
  return value
}

/** A YAML/JSON mapping: an object that is neither null nor an array. */
export function isMapping(v: unknown): v is Readonly<Record<string, unknown>> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
