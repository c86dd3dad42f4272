"use strict";
// Unit tests of lib/backoff.js: run with `node --test extension/tests/`.

const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");

const B = require(path.join(__dirname, "..", "lib", "backoff.js"));

test("defaults", () => {
  assert.deepEqual(B.DEFAULTS, { baseMs: 500, maxMs: 30000, factor: 2 });
});

test("the delay lies in [step/2, step] for the exponential step", () => {
  for (let n = 0; n < 12; n++) {
    const step = Math.min(30000, 500 * 2 ** n);
    assert.equal(B.delayMs(n, {}, () => 0), Math.round(step / 2), `low end, failures=${n}`);
    assert.equal(B.delayMs(n, {}, () => 0.999999), Math.round(step / 2 + 0.999999 * (step / 2)), `high end, failures=${n}`);
    for (let i = 0; i < 50; i++) {
      const d = B.delayMs(n);
      assert.ok(d >= step / 2 && d <= step, `failures=${n}: ${d} not in [${step / 2}, ${step}]`);
    }
  }
});

test("first retry is short, later ones grow, then stay at the cap", () => {
  const mid = () => 0.5;
  assert.equal(B.delayMs(0, {}, mid), 375);
  assert.equal(B.delayMs(1, {}, mid), 750);
  assert.equal(B.delayMs(2, {}, mid), 1500);
  assert.equal(B.delayMs(6, {}, mid), 22500); // 32000 capped to 30000
  assert.equal(B.delayMs(7, {}, mid), 22500);
  assert.equal(B.delayMs(1000, {}, mid), 22500);
  assert.equal(B.delayMs(Infinity, {}, mid), 22500);
  // the backoff never goes down as failures go up
  let last = 0;
  for (let n = 0; n < 40; n++) {
    const d = B.delayMs(n, {}, () => 0);
    assert.ok(d >= last);
    last = d;
  }
});

test("negative and fractional failure counts are clamped and floored", () => {
  const zero = () => 0;
  assert.equal(B.delayMs(-5, {}, zero), 250);
  assert.equal(B.delayMs(1.9, {}, zero), 500);
});

test("options override the defaults", () => {
  assert.equal(B.delayMs(0, { baseMs: 100 }, () => 1), 100);
  assert.equal(B.delayMs(3, { baseMs: 100, factor: 3 }, () => 1), 2700);
  assert.equal(B.delayMs(10, { baseMs: 100, maxMs: 1000 }, () => 1), 1000);
  assert.equal(B.delayMs(10, { baseMs: 100, maxMs: 1000 }, () => 0), 500);
});

test("jitter spreads simultaneous reconnects", () => {
  const seen = new Set();
  for (let i = 0; i < 100; i++) seen.add(B.delayMs(5));
  assert.ok(seen.size > 20, `only ${seen.size} distinct delays`);
});

test("integer delays (setTimeout gets whole milliseconds)", () => {
  for (let i = 0; i < 100; i++) assert.ok(Number.isInteger(B.delayMs(i % 10)));
});
