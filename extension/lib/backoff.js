// Reconnect delays: exponential with full jitter, capped, so ten tabs that lost the hub at
// the same moment do not knock on its door in lock-step.
(function (root, factory) {
  const api = factory();
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.NovelGenBackoff = api;
})(globalThis, function () {
  "use strict";

  const DEFAULTS = { baseMs: 500, maxMs: 30000, factor: 2 };

  /**
   * Delay before reconnect number `failures` (0 = the first retry after a drop).
   * `random` is injectable for tests. Never below half the exponential step, so a flapping
   * hub is not hammered.
   */
  function delayMs(failures, options = {}, random = Math.random) {
    const { baseMs, maxMs, factor } = { ...DEFAULTS, ...options };
    const n = Math.max(0, Math.min(30, Math.floor(failures)));
    const step = Math.min(maxMs, baseMs * Math.pow(factor, n));
    return Math.round(step / 2 + random() * (step / 2));
  }

  return { DEFAULTS, delayMs };
});
