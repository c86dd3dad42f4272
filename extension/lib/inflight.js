// What a slot (one tab + one hub connection) has in flight, and the decisions that follow
// from it after the service worker or the tab restarted. Pure: the service worker stores
// these records (state_store.js) and acts on the plans returned here.
//
// Slot record (durable, written before each step):
//   { slot, workerId, tabId, tabOpenedAt, task, unacked, sequence, turns, updatedAt }
//   task: null | { task_id, attempt, prompt, metadata, references, deadline, stage,
//                  assigned_at, conversation_url, before_image_ids, new_chat, chat_key,
//                  attach, captured, cancelled }
//     references: [{sha256, name, mime}] the assign's reference images
//     chat_key: the conversation key this attempt runs under (null: none is kept)
//     attach: sha256s handed to the page to attach in this attempt (the rest of
//             `references` is already in the conversation)
//     stage: "accepted" → "navigating" → "running" (handed to the page) → "attaching" →
//            "typing" → "submitted" (the prompt is sent: quota is being spent) →
//            "generating" → "downloading" → "captured" (outcome stored, waiting for the hub's ack)
//   unacked: [{ task_id, attempt, kind: "image" | "error", key, error? }]  outcomes stored
//            and sent (or not yet sent) but not acknowledged by the hub
//   conversations: { <key>: { url, attached: [sha256], at } } the conversation this tab keeps
//          for each conversation key (per_sequence mode, or the hub's metadata.sequence): its
//          URL once known and the reference images already attached in it; at most
//          MAX_CONVERSATIONS, the least recently used dropped first. Absent in old records.
//   sequence: { key, url } what older versions kept instead (one key); read, never written
//   turns: { count, url } prompts sent in the tab's current conversation (`status`'s
//          conversation_turns): 0 in a new chat; url once the conversation has one
(function (root, factory) {
  const api = factory();
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.NovelGenInflight = api;
})(globalThis, function () {
  "use strict";

  const STAGE_ORDER = ["accepted", "navigating", "running", "attaching", "typing", "submitted", "generating", "downloading", "captured"];
  /** Conversation keys a tab remembers (a page of the script is one key). */
  const MAX_CONVERSATIONS = 32;

  function emptySlot(slot, workerId) {
    return { slot, workerId, tabId: null, tabOpenedAt: null, task: null, unacked: [], sequence: null, turns: freshTurns(), updatedAt: 0 };
  }

  // -- conversation turns ----------------------------------------------------------------
  // A count per tab of the prompts sent in the conversation it shows, so the hub can send a
  // tab whose conversation grew long (a heavy page) to a new chat. Counted by the service
  // worker, not read from the page: the page only shows what it has rendered.

  function freshTurns() {
    return { count: 0, url: null };
  }

  function sameConversation(a, b) {
    if (!a || !b) return false;
    const strip = (u) => String(u).replace(/[?#].*$/, "").replace(/\/$/, "");
    return strip(a) === strip(b);
  }

  /** The tab goes to a new chat (0 turns) or to the conversation at `url` (its count is kept
   * when it is the one counted; another conversation is counted from 0 from now on). */
  function turnsAfterNavigation(turns, { newChat, url }) {
    const current = turns || freshTurns();
    if (newChat || !url) return freshTurns();
    if (sameConversation(current.url, url)) return current;
    return { count: 0, url };
  }

  /** A prompt was sent (`submitted`) in the conversation at `conversationUrl` (null: a new
   * chat whose URL is not known yet). */
  function turnsAfterSend(turns, conversationUrl) {
    const current = turns || freshTurns();
    if (conversationUrl && current.url && !sameConversation(current.url, conversationUrl)) return { count: 1, url: conversationUrl };
    return { count: current.count + 1, url: current.url || conversationUrl || null };
  }

  /** The conversation's URL became known (a new chat gets its /c/<id> after the first send). */
  function turnsWithUrl(turns, conversationUrl) {
    const current = turns || freshTurns();
    if (!conversationUrl || current.url) return current;
    return { ...current, url: conversationUrl };
  }

  function attemptKey(taskId, attempt) {
    return `${taskId}#${attempt}`;
  }

  function taskFromAssign(assign, now) {
    return {
      task_id: assign.task_id,
      attempt: assign.attempt,
      prompt: assign.prompt,
      metadata: assign.metadata || {},
      references: uniqueReferences(assign.references),
      deadline: assign.deadline,
      stage: "accepted",
      assigned_at: now,
      conversation_url: null,
      before_image_ids: null,
      new_chat: true,
      captured: false,
      cancelled: false,
    };
  }

  /** Has the prompt (probably) reached ChatGPT? From then on a re-send would pay twice. */
  function promptSent(task) {
    return STAGE_ORDER.indexOf(task.stage) >= STAGE_ORDER.indexOf("submitted");
  }

  /** Move a task forward; never backward (messages from the page may arrive late). */
  function advance(task, stage, fields = {}) {
    const next = { ...task, ...fields };
    if (STAGE_ORDER.indexOf(stage) > STAGE_ORDER.indexOf(task.stage)) next.stage = stage;
    return next;
  }

  /** The attempts to list in `hello.holding` after a reconnect. */
  function holding(record) {
    const out = [];
    const seen = new Set();
    const add = (taskId, attempt) => {
      const key = attemptKey(taskId, attempt);
      if (!seen.has(key)) {
        seen.add(key);
        out.push({ task_id: String(taskId), attempt });
      }
    };
    for (const u of record.unacked || []) add(u.task_id, u.attempt);
    if (record.task && !record.task.cancelled) add(record.task.task_id, record.task.attempt);
    return out.slice(0, 64);
  }

  /**
   * The sequence a task belongs to in per_sequence mode: one ChatGPT conversation per page
   * of the script (job + chapter + page), so the model sees the page's earlier panels.
   */
  function sequenceKey(metadata) {
    const m = metadata || {};
    if (m.sequence != null) return `seq:${m.sequence}`;
    if (m.job_id == null) return null;
    return [m.job_id, m.chapter ?? "", m.page ?? ""].join("|");
  }

  /**
   * The conversation key an attempt runs under: the hub's `metadata.sequence` whatever the
   * chat mode (the desktop's chat strategy chose it), else in per_sequence mode the page of
   * the script (sequenceKey), else none (per_task: every attempt in a new chat).
   */
  function conversationKey(mode, metadata) {
    const m = metadata || {};
    if (m.sequence != null || mode === "per_sequence") return sequenceKey(m);
    return null;
  }

  /** What the tab keeps for `key`: {url, attached} or null (older records: `sequence`). */
  function conversationOf(record, key) {
    if (!key || !record) return null;
    const kept = record.conversations && Object.prototype.hasOwnProperty.call(record.conversations, key) ? record.conversations[key] : null;
    if (kept) return { url: kept.url || null, attached: Array.isArray(kept.attached) ? kept.attached : [] };
    const legacy = record.sequence;
    if (legacy && legacy.key === key) return { url: legacy.url || null, attached: [] };
    return null;
  }

  /**
   * Where the tab must be before the page may type this task: a new chat (the site root) or
   * the conversation kept for its key.
   *   - `metadata.new_chat: true`: always a new chat (the hub decided the conversation is long
   *     enough); the new conversation is kept under the key, if there is one.
   *   - `metadata.sequence`: that key's conversation, whatever the chat mode; a new chat when
   *     the tab has no URL for it.
   *   - neither: the configured mode (per_task: a new chat; per_sequence: the page's key).
   */
  function chatPlan(mode, record, task) {
    const m = (task && task.metadata) || {};
    const hostDecides = m.sequence != null || m.new_chat === true;
    if (mode !== "per_sequence" && !hostDecides) return { newChat: true, url: null };
    const key = conversationKey(mode, m);
    if (m.new_chat === true) return { newChat: true, url: null, key };
    const kept = conversationOf(record, key);
    if (key && kept && kept.url) return { newChat: false, url: kept.url, key };
    return { newChat: true, url: null, key };
  }

  // -- reference images ------------------------------------------------------------------
  // Attached once per chat: a new chat gets every reference of the assign, a continued
  // conversation only those not attached in it yet. Counted as attached once the prompt that
  // carried them was sent (`submitted`): an attempt that failed before sending left nothing
  // in the conversation.

  /** The assign's references without repeats (first occurrence kept), as plain objects. */
  function uniqueReferences(references) {
    const seen = new Set();
    const out = [];
    for (const ref of Array.isArray(references) ? references : []) {
      if (!ref || typeof ref.sha256 !== "string" || seen.has(ref.sha256)) continue;
      seen.add(ref.sha256);
      out.push({ sha256: ref.sha256, name: ref.name, mime: ref.mime });
    }
    return out;
  }

  /** The references the page must attach for this plan: all in a new chat, else the new ones. */
  function referencesToAttach(plan, record, references) {
    const refs = uniqueReferences(references);
    if (plan.newChat) return refs;
    const kept = conversationOf(record, plan.key);
    const attached = new Set(kept ? kept.attached : []);
    return refs.filter((ref) => !attached.has(ref.sha256));
  }

  /** Drop the least recently used keys beyond MAX_CONVERSATIONS. */
  function boundConversations(conversations) {
    const entries = Object.entries(conversations);
    if (entries.length <= MAX_CONVERSATIONS) return conversations;
    entries.sort((a, b) => (b[1].at || 0) - (a[1].at || 0));
    return Object.fromEntries(entries.slice(0, MAX_CONVERSATIONS));
  }

  function withConversation(record, key, change, now) {
    if (!key) return record;
    const conversations = { ...(record.conversations || {}) };
    const before = conversationOf(record, key) || { url: null, attached: [] };
    conversations[key] = { ...change(before), at: now };
    const next = { ...record, conversations: boundConversations(conversations) };
    if (next.sequence && next.sequence.key === key) next.sequence = null; // superseded
    return next;
  }

  /** The tab starts a new chat for `key`: no URL yet, nothing attached. */
  function conversationStarted(record, key, now = Date.now()) {
    return withConversation(record, key, () => ({ url: null, attached: [] }), now);
  }

  /** The conversation of `key` got its URL (a new chat gets /c/<id> after its first send). */
  function conversationUrlKnown(record, key, url, now = Date.now()) {
    if (!url) return record;
    return withConversation(record, key, (c) => ({ ...c, url }), now);
  }

  /** A prompt carrying `attached` (sha256s) was sent in the conversation of `key`. */
  function referencesSent(record, key, attached, url, now = Date.now()) {
    return withConversation(
      record,
      key,
      (c) => ({ url: url || c.url, attached: [...new Set([...c.attached, ...(attached || [])])] }),
      now
    );
  }

  /** Every sha256 the records' tasks still need (prune the rest once idle). */
  function referencedShas(records) {
    const keep = new Set();
    for (const record of records) {
      const task = record && record.task;
      if (!task) continue;
      for (const ref of task.references || []) keep.add(ref.sha256);
    }
    return keep;
  }

  /**
   * After a restart (of the service worker, or of the tab's page), what to do with a task
   * the record says is in flight, given what the page says it is doing:
   *   pageTask: { task_id, attempt, stage } | null  (null: the page knows nothing of it)
   *   tabAlive: whether the tab still exists
   * Plans: "wait" (the page works on it and will report), "resend" (the outcome is stored:
   * send it), "rerun" (the prompt never left: start over), "resume" (the prompt was sent:
   * watch its conversation for the image, do not pay again), "give_back" (nothing can be
   * saved: let the hub requeue it).
   */
  function recoveryPlan(task, pageTask, tabAlive) {
    if (!task) return "none";
    if (task.captured) return "resend";
    if (task.cancelled) return "drop";
    if (tabAlive && pageTask && pageTask.task_id === task.task_id && pageTask.attempt === task.attempt) return "wait";
    if (!promptSent(task)) return tabAlive ? "rerun" : "rerun_new_tab";
    if (task.conversation_url) return "resume";
    return "give_back";
  }

  /** Drop an acknowledged outcome; clear the task if it was the one in hand. */
  function acknowledge(record, taskId, attempt) {
    const unacked = (record.unacked || []).filter((u) => !(u.task_id === String(taskId) && u.attempt === attempt));
    let task = record.task;
    if (task && task.task_id === String(taskId) && task.attempt === attempt) task = null;
    return { ...record, unacked, task };
  }

  return {
    STAGE_ORDER,
    emptySlot,
    freshTurns,
    turnsAfterNavigation,
    turnsAfterSend,
    turnsWithUrl,
    attemptKey,
    taskFromAssign,
    promptSent,
    advance,
    holding,
    MAX_CONVERSATIONS,
    sequenceKey,
    conversationKey,
    conversationOf,
    chatPlan,
    uniqueReferences,
    referencesToAttach,
    conversationStarted,
    conversationUrlKnown,
    referencesSent,
    referencedShas,
    recoveryPlan,
    acknowledge,
  };
});
