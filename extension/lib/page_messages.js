/*
 * NovelGen page messages: what a piece of ChatGPT text means for the task that produced it.
 *
 * classify(text, now) → {kind, message, retryAfterSeconds?, plan?}
 *   kind "rate_limited": the account's image quota is spent; retryAfterSeconds is the announced
 *                        reset (null when the text names no time). Not a failure: the hub
 *                        rests the account and must not retry before the reset.
 *   kind "refused":      content policy; retrying the same prompt wastes quota.
 *   kind "transient":    a generation error worth retrying with backoff.
 *   kind "login":        the session expired.
 *   kind "none":         nothing recognised (ordinary answer text, a prompt, ...).
 *
 * Pure text in, data out: the driver decides WHICH text to classify (only new assistant turns
 * inside `main`, never the sidebar of chat titles, where a chat may be named "rate limit").
 */
(function (root, factory) {
  const api = factory();
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.NovelGenPageMessages = api;
})(globalThis, function () {
  "use strict";

  /** Longest message kept (the hub accepts 4096 characters). */
  const MAX_MESSAGE_LENGTH = 4000;
  /** Longest announced reset the hub accepts (7 days). */
  const MAX_RETRY_AFTER_SECONDS = 604800;

  // Patterns run on normalised text: typographic quotes become ASCII, whitespace is collapsed.
  // They are specific on purpose: a prompt or an answer may mention "limit", "policy" or
  // "error" without being one of these messages.
  const PATTERNS = {
    rate_limited: [
      /\b(?:hit|reached|exceeded)\s+(?:the|your|our)\s+(?:[\w-]+\s+){0,4}(?:limit|quota|cap)\b/i,
      /\blimit\s+(?:resets|will reset|is reset)\b/i,
      /\b(?:resets|will reset)\s+(?:in|at)\b/i,
      /\b(?:image generation|image|usage|message|rate)\s+limits?\s+(?:has been |have been )?(?:reached|exceeded|hit)\b/i,
      /\brate[- ]limit(?:ed\b|s?\s+(?:reached|exceeded|hit)\b)/i,
      /\btoo many requests\b/i,
      /\b(?:generating|creating|making) (?:images )?too (?:quickly|fast)\b/i,
      /\bcan create more images (?:when|after|in|once)\b/i,
      /\bout of (?:image )?(?:generations|credits)\b/i,
    ],
    login: [
      /\byour session has expired\b/i,
      /\bsession (?:has )?expired\b/i,
      /\bplease (?:log|sign) in again\b/i,
      /\byou(?:'ve| have) been (?:logged|signed) out\b/i,
    ],
    refused: [
      /\bviolat\w*\s+our\s+content\s+polic(?:y|ies)\b/i,
      /\bviolat\w*\s+our\s+guardrails\b/i,
      /\bagainst\s+our\s+content\s+polic(?:y|ies)\b/i,
      /\b(?:does|did)(?: not|n't) (?:comply with|follow|meet) our content polic(?:y|ies)\b/i,
      /\bI\s+(?:can't|cannot|can not|am unable to|'m unable to|won't be able to)\s+(?:help|assist)\s+with\s+(?:that|this)\b/i,
      /\b(?:can't|cannot|can not|unable to|won't be able to|not able to)\s+(?:create|generate|make|produce|draw)\s+(?:that|this|the requested|an? |images? )/i,
    ],
    transient: [
      /\bimage generation failed\b/i,
      /\bexperienced an error (?:when|while) generating\b/i,
      /\bsomething went wrong\b/i,
      /\bnetwork error\b/i,
      /\ban error occurred\b/i,
      /\bthere was an error (?:generating|creating|while)\b/i,
      /\berror in (?:the )?message stream\b/i,
      /\bsomething seems to have gone wrong\b/i,
    ],
  };

  /** Order of precedence: a limit message may also say "try again later" or "something". */
  const KIND_ORDER = ["rate_limited", "login", "refused", "transient"];

  function normalize(text) {
    return String(text === undefined || text === null ? "" : text)
      .replace(/[\u2018\u2019\u201A\u201B\u2032\u00B4`]/g, "'")
      .replace(/[\u201C\u201D\u201E\u2033]/g, '"')
      .replace(/[\u00A0\u2007\u202F]/g, " ")
      .replace(/\s+/g, " ")
      .trim();
  }

  const UNIT_SECONDS = { week: 604800, day: 86400, hour: 3600, minute: 60, second: 1 };
  const UNIT_ALIASES = [
    ["week", /^(?:weeks?|wks?|w)$/i],
    ["day", /^(?:days?|d)$/i],
    ["hour", /^(?:hours?|hrs?|h)$/i],
    ["minute", /^(?:minutes?|mins?|m)$/i],
    ["second", /^(?:seconds?|secs?|s)$/i],
  ];
  const NUMBER_WORDS = {
    a: 1, an: 1, one: 1, two: 2, three: 3, four: 4, five: 5, six: 6, seven: 7, eight: 8,
    nine: 9, ten: 10, eleven: 11, twelve: 12, fifteen: 15, twenty: 20, thirty: 30, "forty-five": 45,
  };
  const WORD_NUMBER = Object.keys(NUMBER_WORDS).sort((x, y) => y.length - x.length).join("|");
  const UNIT = "(?:weeks?|wks?|days?|hours?|hrs?|minutes?|mins?|seconds?|secs?|w|d|h|m|s)";
  // A number with a unit; the unit must end the word or be followed by the next number
  // ("1h30m"). Word numbers need a space before the unit ("an hour", not "ah").
  const AMOUNT = `(?:(?<![\\d.,])\\d+(?:[.,]\\d+)?\\s*|\\b(?:${WORD_NUMBER})\\s+)${UNIT}(?![a-z])`;
  const DURATION_RUN = new RegExp(`${AMOUNT}(?:\\s*(?:,\\s*)?(?:and\\s+)?${AMOUNT})*`, "gi");
  const AMOUNT_PARTS = new RegExp(`(?:(?<![\\d.,])(\\d+(?:[.,]\\d+)?)\\s*|\\b(${WORD_NUMBER})\\s+)(${UNIT})(?![a-z])`, "gi");

  function unitOf(word) {
    for (const [unit, pattern] of UNIT_ALIASES) if (pattern.test(word)) return unit;
    return null;
  }

  function numberOf(word) {
    const lower = word.toLowerCase();
    if (lower in NUMBER_WORDS) return NUMBER_WORDS[lower];
    return Number(lower.replace(",", "."));
  }

  /** Seconds in a run like "12 hours and 43 minutes" or "1h 30m"; null if none. */
  function durationSeconds(run) {
    let total = 0;
    let found = false;
    for (const match of run.matchAll(AMOUNT_PARTS)) {
      const unit = unitOf(match[3]);
      const amount = numberOf(match[1] !== undefined ? match[1] : match[2]);
      if (!unit || !Number.isFinite(amount)) continue;
      total += amount * UNIT_SECONDS[unit];
      found = true;
    }
    return found ? Math.round(total) : null;
  }

  /**
   * The first reset duration in the text, in seconds; null if there is none.
   * Durations introduced by "in", "after", "wait", ... are preferred: a limit message may
   * also describe the quota window ("50 images per 3 hours"), which is not the reset.
   */
  function parseDuration(text) {
    const normalized = normalize(text);
    const runs = Array.from(normalized.matchAll(DURATION_RUN)).map((match) => ({
      text: match[0],
      before: normalized.slice(Math.max(0, match.index - 24), match.index).toLowerCase(),
    }));
    const introduced = runs.find((run) => /\b(?:in|after|wait|another|for|within)\s+(?:about\s+|around\s+|roughly\s+|approximately\s+|~\s*)?$/.test(run.before));
    const candidate = introduced || runs.find((run) => !/\b(?:per|every|each|a|an)\s+$|\/\s*$/.test(run.before));
    return candidate ? durationSeconds(candidate.text) : null;
  }

  const CLOCK_TIME = /\b(tomorrow\s+)?(?:at|after|until|by|around)\s+(tomorrow\s+(?:at\s+)?)?(\d{1,2})(?::(\d{2}))?\s*(a\.?m\.?|p\.?m\.?)?(?![\w:])/i;

  /**
   * Seconds from `now` until a clock time named in the text ("at 4:05 PM", "after 16:05",
   * "at 4 PM"), in the page's local time; the next such time, so an hour earlier than now
   * means tomorrow. Null when there is no clock time. A bare number without minutes or
   * AM/PM ("at 4") is not taken as a time.
   */
  function parseClockTime(text, now) {
    const match = CLOCK_TIME.exec(normalize(text));
    if (!match) return null;
    const [, tomorrowBefore, tomorrowAfter, hourText, minuteText, meridiem] = match;
    const tomorrow = Boolean(tomorrowBefore || tomorrowAfter);
    if (minuteText === undefined && !meridiem) return null;
    let hour = Number(hourText);
    const minute = minuteText === undefined ? 0 : Number(minuteText);
    if (minute > 59) return null;
    if (meridiem) {
      if (hour < 1 || hour > 12) return null;
      const pm = /^p/i.test(meridiem);
      hour = (hour % 12) + (pm ? 12 : 0);
    } else if (hour > 23) {
      return null;
    }
    const nowDate = new Date(now === undefined ? Date.now() : now);
    const target = new Date(nowDate.getTime());
    target.setHours(hour, minute, 0, 0);
    if (tomorrow) target.setDate(target.getDate() + 1);
    else if (target.getTime() <= nowDate.getTime()) target.setDate(target.getDate() + 1);
    return Math.round((target.getTime() - nowDate.getTime()) / 1000);
  }

  /** The announced reset in seconds from `now` (a duration or a clock time); null if none. */
  function parseRetryAfter(text, now) {
    const seconds = parseDuration(text);
    const result = seconds !== null ? seconds : parseClockTime(text, now);
    if (result === null) return null;
    return Math.min(Math.max(result, 0), MAX_RETRY_AFTER_SECONDS);
  }

  const PLAN_NAME = /\b(free|plus|team|pro|enterprise|edu|business|go)\s+plan\b/i;

  /** Cuts to `max` UTF-16 units without splitting a surrogate pair (the hub refuses halves). */
  function truncate(text, max = MAX_MESSAGE_LENGTH) {
    if (text.length <= max) return text;
    let end = max - 1;
    const last = text.charCodeAt(end - 1);
    if (last >= 0xd800 && last <= 0xdbff) end -= 1;
    return `${text.slice(0, end)}…`;
  }

  /** What `text` means; `now` (ms or Date, default Date.now()) anchors clock times. */
  function classify(text, now) {
    const normalized = normalize(text);
    for (const kind of KIND_ORDER) {
      if (!PATTERNS[kind].some((pattern) => pattern.test(normalized))) continue;
      const result = { kind, message: truncate(normalized) };
      if (kind === "rate_limited") {
        result.retryAfterSeconds = parseRetryAfter(normalized, now);
        const plan = PLAN_NAME.exec(normalized);
        if (plan) result.plan = plan[1].toLowerCase();
      }
      return result;
    }
    return { kind: "none", message: "" };
  }

  return {
    PATTERNS,
    KIND_ORDER,
    MAX_MESSAGE_LENGTH,
    MAX_RETRY_AFTER_SECONDS,
    normalize,
    truncate,
    parseDuration,
    parseClockTime,
    parseRetryAfter,
    classify,
  };
});
