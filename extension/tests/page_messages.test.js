"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const PageMessages = require("../lib/page_messages.js");

const { classify, parseDuration, parseClockTime, parseRetryAfter, PATTERNS, normalize } = PageMessages;

// 2026-01-05 14:00:00 local time: clock times are interpreted in the page's time zone.
const NOW = new Date(2026, 0, 5, 14, 0, 0).getTime();
const H = 3600;
const M = 60;

test("the pattern lists are exported as data, one list per kind", () => {
  assert.deepEqual(Object.keys(PATTERNS).sort(), ["login", "rate_limited", "refused", "transient"]);
  for (const list of Object.values(PATTERNS)) {
    assert.ok(list.length > 0);
    for (const pattern of list) assert.ok(pattern instanceof RegExp);
  }
});

test("rate limit: the spec's message with its reset in hours and minutes", () => {
  const result = classify(
    "You've hit the plus plan limit for image generations requests. You can create more images when the limit resets in 12 hours and 43 minutes.",
    NOW,
  );
  assert.equal(result.kind, "rate_limited");
  assert.equal(result.retryAfterSeconds, 12 * H + 43 * M);
  assert.equal(result.plan, "plus");
  assert.match(result.message, /resets in 12 hours and 43 minutes/);
});

test("rate limit: every plan name", () => {
  for (const plan of ["free", "plus", "team", "pro", "enterprise"]) {
    const result = classify(`You've hit the ${plan} plan limit for image generations requests. You can create more images when the limit resets in 2 hours.`, NOW);
    assert.equal(result.kind, "rate_limited", plan);
    assert.equal(result.plan, plan);
    assert.equal(result.retryAfterSeconds, 2 * H);
  }
  const planless = classify("You've hit the image generation limit. It resets in 12 minutes.", NOW);
  assert.equal(planless.kind, "rate_limited");
  assert.equal(planless.plan, undefined);
  assert.equal(planless.retryAfterSeconds, 720);
});

test("rate limit: many phrasings and units", () => {
  const cases = [
    ["You've reached the image generation limit. Try again in 40 seconds.", 40],
    ["You’ve hit the free plan limit for image generations requests. You can create more images when the limit resets in 1 hour.", H],
    ["You have reached your limit. Please wait 2 days.", 2 * 86400],
    ["Image generation limit reached — resets in 5 min.", 5 * M],
    ["You've hit the plus plan limit. Try again in 1h 30m.", 90 * M],
    ["You've hit the plus plan limit. Try again in 1h30m.", 90 * M],
    ["You've hit the plus plan limit. Try again in 2h, 5m and 10s.", 2 * H + 5 * M + 10],
    ["You've hit the plus plan limit. Try again in 1 hr 2 mins.", H + 2 * M],
    ["You've hit the plus plan limit. Try again in 30 secs.", 30],
    ["You've hit the plus plan limit. The limit resets in an hour.", H],
    ["You've hit the plus plan limit. The limit resets in a minute.", M],
    ["You've hit the plus plan limit. The limit resets in two hours and fifteen minutes.", 2 * H + 15 * M],
    ["You've hit the plus plan limit. The limit resets in 1.5 hours.", 90 * M],
    ["You've hit the plus plan limit. The limit resets in 1 week.", 604800],
    ["You're generating images too quickly. Please wait 30 seconds before trying again.", 30],
    ["Too many requests in 1 hour. Try again later.", H],
    ["You have hit the free plan limit of 3 images per 24 hours. It resets in 20 hours.", 20 * H],
    ["We're rate limited right now. Try again after 90 seconds.", 90],
    ["You've hit the team plan limit. Your limit resets in 12 HOURS and 43 MINUTES.", 12 * H + 43 * M],
  ];
  for (const [text, seconds] of cases) {
    const result = classify(text, NOW);
    assert.equal(result.kind, "rate_limited", text);
    assert.equal(result.retryAfterSeconds, seconds, text);
  }
});

test("rate limit: no time named → retryAfterSeconds null", () => {
  for (const text of [
    "You've hit the plus plan limit for image generations requests. Please try again later.",
    "You've reached our limit of messages per hour. Please try again later.",
    "Too many requests. Try again later.",
    "You've hit the free plan limit of 3 images per day.",
  ]) {
    const result = classify(text, NOW);
    assert.equal(result.kind, "rate_limited", text);
    assert.equal(result.retryAfterSeconds, null, text);
  }
});

test("rate limit: clock times relative to now (later today, or tomorrow)", () => {
  const today = classify("You've hit the plus plan limit. You can create more images after 4:05 PM.", NOW);
  assert.equal(today.kind, "rate_limited");
  assert.equal(today.retryAfterSeconds, 2 * H + 5 * M);
  const morning = classify("You've hit the plus plan limit. Your limit resets at 9:30 AM.", NOW);
  assert.equal(morning.retryAfterSeconds, 19 * H + 30 * M, "9:30 AM is tomorrow");
  const tomorrow = classify("You've hit the plus plan limit. It resets tomorrow at 3:00 PM.", NOW);
  assert.equal(tomorrow.retryAfterSeconds, 25 * H);
});

test("parseClockTime: formats", () => {
  assert.equal(parseClockTime("at 4:05 PM", NOW), 2 * H + 5 * M);
  assert.equal(parseClockTime("at 4:05pm", NOW), 2 * H + 5 * M);
  assert.equal(parseClockTime("at 4 p.m.", NOW), 2 * H);
  assert.equal(parseClockTime("after 16:05", NOW), 2 * H + 5 * M);
  assert.equal(parseClockTime("until 12:00 AM", NOW), 10 * H, "midnight");
  assert.equal(parseClockTime("at 12:30 PM", NOW), 22 * H + 30 * M, "half past noon has passed: tomorrow");
  assert.equal(parseClockTime("at 14:00", NOW), 24 * H, "exactly now means the next day");
  assert.equal(parseClockTime("by 23:59", new Date(2026, 0, 5, 23, 58).getTime()), M);
  assert.equal(parseClockTime("at 4", NOW), null, "a bare number is not a time");
  assert.equal(parseClockTime("at 25:00", NOW), null);
  assert.equal(parseClockTime("at 13:00 PM", NOW), null);
  assert.equal(parseClockTime("at 4:75 PM", NOW), null);
  assert.equal(parseClockTime("no time here", NOW), null);
  assert.equal(parseClockTime("at 4:05 PM", new Date(NOW)), 2 * H + 5 * M, "now may be a Date");
});

test("parseDuration: the reset, not the quota window", () => {
  assert.equal(parseDuration("50 images per 3 hours; resets in 40 minutes"), 40 * M);
  assert.equal(parseDuration("limit of 50 images every 3 hours"), null);
  assert.equal(parseDuration("wait 10 s"), 10);
  assert.equal(parseDuration("try again in ~5 minutes"), 5 * M);
  assert.equal(parseDuration("try again in about 2 hours"), 2 * H);
  assert.equal(parseDuration("in 3 days and 4 hours"), 3 * 86400 + 4 * H);
  assert.equal(parseDuration("nothing"), null);
  assert.equal(parseDuration("my 2 hamsters and 3 mice"), null, "units must be whole words");
  assert.equal(parseDuration("standing in the hall"), null);
  assert.equal(parseDuration(""), null);
  assert.equal(parseDuration(undefined), null);
});

test("parseRetryAfter: a duration wins over a clock time; bounded to 7 days", () => {
  assert.equal(parseRetryAfter("resets in 10 minutes (at 4:05 PM)", NOW), 10 * M);
  assert.equal(parseRetryAfter("resets at 4:05 PM", NOW), 2 * H + 5 * M);
  assert.equal(parseRetryAfter("resets in 30 days", NOW), 604800);
  assert.equal(parseRetryAfter("try again later", NOW), null);
});

test("refusals: many phrasings, typographic apostrophes", () => {
  for (const text of [
    "This request may violate our content policies.",
    "I'm unable to generate that image because it may violate our content policy.",
    "This image generation request did not follow our content policy.",
    "This prompt may violate our guardrails concerning similarity to third-party content.",
    "Your request may violate our guardrails around nudity.",
    "I can't help with that.",
    "I can’t help with that.",
    "I cannot assist with that request.",
    "I can’t create that image because it goes against our content policy.",
    "Sorry, I can't generate that image.",
    "I’m unable to create images of real public figures.",
    "That request goes against our content policies.",
    "I'm not able to make that image.",
  ]) {
    const result = classify(text, NOW);
    assert.equal(result.kind, "refused", text);
    assert.equal(result.message, normalize(text));
    assert.equal(result.retryAfterSeconds, undefined);
  }
});

test("transient errors", () => {
  for (const text of [
    "Image generation failed",
    "Image generation failed. Try again",
    "I experienced an error when generating images. Please try again.",
    "Something went wrong. If this issue persists please contact us.",
    "Something went wrong while generating the response.",
    "A network error occurred. Please check your connection and try again.",
    "Network error",
    "An error occurred. Either the engine you requested does not exist or there was another issue.",
    "There was an error generating a response",
    "Error in message stream",
    "Hmm...something seems to have gone wrong.",
  ]) {
    assert.equal(classify(text, NOW).kind, "transient", text);
  }
});

test("session expiry", () => {
  for (const text of ["Your session has expired. Please log in again.", "You have been logged out.", "Session expired", "Please sign in again to continue"]) {
    assert.equal(classify(text, NOW).kind, "login", text);
  }
});

test("precedence: a limit message that also says 'try again' or 'something went wrong' is a limit", () => {
  assert.equal(classify("Something went wrong: you've hit the plus plan limit. Try again in 5 minutes.", NOW).kind, "rate_limited");
});

test("no false positives: prompts, ordinary answers, sidebar titles", () => {
  for (const text of [
    "",
    "   ",
    "Draw a speed limit sign on a mountain road, 40 mph limit",
    "A comic panel: the hero says 'I have reached my limit!' in the rain",
    "Panel 3: the robot hits the speed limit sign, sparks fly",
    "A poster that reads: Rate your limits",
    "Here is your image of a lighthouse at dusk.",
    "Generated image: a cat reading a content policy document",
    "I can't wait to see it! Here's the lighthouse.",
    "The villain's plan failed. Something fell from the sky in 5 minutes.",
    "Image generation prompts: a knight resets the clock at 4:05 PM",
    "Policy discussion",
    "Rate limit handling in Python",
  ]) {
    assert.equal(classify(text, NOW).kind, "none", text);
  }
});

test("texts the driver never classifies can still look like messages (why the driver scopes to new assistant turns)", () => {
  // Sidebar chat titles are chosen by the user and may read like anything: this is why the
  // driver reads only new assistant turns inside main. classify itself is plain text.
  assert.equal(classify("Chat titled: Network error debugging", NOW).kind, "transient");
});

test("messages are normalised and bounded", () => {
  const long = `I can't help with that. ${"x".repeat(10000)}`;
  const result = classify(long, NOW);
  assert.equal(result.kind, "refused");
  assert.ok(result.message.length <= PageMessages.MAX_MESSAGE_LENGTH);
  assert.equal(classify("  Image\n\n generation\u00a0failed  ", NOW).message, "Image generation failed");
  assert.deepEqual(classify("hello", NOW), { kind: "none", message: "" });
  assert.deepEqual(classify(null, NOW), { kind: "none", message: "" });
});

test("classify without now uses the current time for clock times", () => {
  const result = classify("You've hit the plus plan limit. It resets at 4:05 PM.");
  assert.equal(result.kind, "rate_limited");
  assert.ok(result.retryAfterSeconds > 0 && result.retryAfterSeconds <= 24 * H);
});

test("truncation never splits a surrogate pair", () => {
  const text = "a".repeat(PageMessages.MAX_MESSAGE_LENGTH - 2) + "\u{1F600}".repeat(5);
  const cut = PageMessages.truncate(text);
  assert.ok(cut.length <= PageMessages.MAX_MESSAGE_LENGTH);
  assert.doesNotMatch(cut, /[\uD800-\uDBFF](?![\uDC00-\uDFFF])/);
  assert.equal(PageMessages.truncate("short"), "short");
});
