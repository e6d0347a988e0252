/**
 * A memo for results keyed by what clients send (a unit code, a ValueSet URL): it forgets
 * everything once it holds `max` entries, so that a stream of distinct keys (a device's garbage,
 * or a caller probing) costs a recomputation now and then instead of memory without end. The
 * keys that matter repeat and are back after the next few requests.
 */
export class BoundedMemo<K, V> {
  private readonly entries = new Map<K, V>();

  constructor(private readonly max: number) {}

  /** The remembered value of `key`, or `compute(key)` remembered. */
  get(key: K, compute: (key: K) => V): V {
    if (this.entries.has(key)) return this.entries.get(key) as V;
    const value = compute(key);
    if (this.entries.size >= this.max) this.entries.clear();
    this.entries.set(key, value);
    return value;
  }

  get size(): number {
    return this.entries.size;
  }
}
