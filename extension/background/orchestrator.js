// The tab orchestrator: one Slot per ChatGPT tab, each with its own hub connection.
//
// A slot connects to the hub, opens (or adopts) its pinned, non-discardable tab, takes one
// assignment at a time, hands it to the content script in that tab, stores the outcome
// durably, sends it, and forgets it only when the hub acknowledges it. Tabs open 2 s apart.
// A dead tab is replaced; its task is resumed in the new tab when the prompt was already
// sent and the conversation is known (no second payment), rerun when the prompt never left,
// and otherwise given back to the hub at once (bye tab_closed). The hub's memory governor may
// ask an idle slot to give memory back (`cleanup`): reload its tab, open a new chat, or forget
// image bytes the hub already has. Reference images (`reference_image`) are checked and kept
// in IndexedDB, shared by the slots (content-addressed), and attached by the page before it
// types a prompt that lists them: once per conversation.
(function (root, factory) {
  const api = factory();
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.NovelGenOrchestrator = api;
})(globalThis, function () {
  "use strict";

  const CHATGPT_URL = "https://chatgpt.com/";
  const TAB_OPEN_GAP_MS = 2000;
  const READY_TIMEOUT_MS = 60000;
  const TAB_RETRY_MS = 60000;
  const PING_TIMEOUT_MS = 5000;
  const STATUS_MIN_GAP_MS = 5000;
  const RUN_ACCEPT_RETRIES = 5;
  /** A reloaded tab must be back and healthy within this (the protocol's 60 s; the hub waits 75). */
  const CLEANUP_READY_MS = 60000;
  const DEFAULT_TASK_MS = 6 * 60 * 1000;
  const FORGET_ON_ERROR = new Set(["unknown_task", "bad_field", "too_large"]);
  const CONTENT_FILES = ["lib/selector_table.js", "lib/page_messages.js", "lib/protocol.js", "content/driver.js"];
  /**
   * The feature flags the hub may send in `configure.flags` (name → value), with the value in
   * force when the hub says nothing. Names not listed here are ignored.
   */
  const FLAG_DEFAULTS = Object.freeze({ multi_tab: true, selector_updates: true, reference_images: true });

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function withTimeout(promise, ms, what) {
    let timer;
    return Promise.race([
      promise,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms / 1000} s`)), ms);
      }),
    ]).finally(() => clearTimeout(timer));
  }

  class Slot {
    constructor(orch, n, record) {
      this.orch = orch;
      this.n = n;
      this.record = record;
      this.conn = null;
      this.health = "loading";
      this.healthDetail = "";
      this.url = null;
      this.memoryBytes = undefined;
      this.pageId = null; // the content script's id of its page load (a reload makes a new one)
      this.cleaning = null; // a promise while a reload_tab/new_chat cleanup runs
      this.storingKeys = new Set(); // images being written, not yet in record.unacked
      this.receivedRefs = new Set(); // sha256s of reference_image received on this connection
      this.composerDirty = false; // an attempt failed after attaching: reload before the next
      this.readyCount = 0;
      this.readyWaiters = [];
      this.chain = Promise.resolve();
      this.awaiting = []; // outcomes sent on this connection, in order: the hub answers each once
      this.sentKeys = new Set();
      this.cooldownUntil = 0;
      this.lastStatusAt = 0;
      this.statusTimer = null;
      this.pingFailures = 0;
      this.retiring = false;
      this.draining = null; // why this slot closes once it holds nothing (fewer tabs wanted)
      this.running = false;
      this.connState = "idle";
      this.connDetail = "";
    }

    get workerId() {
      return this.record.workerId;
    }

    get tabId() {
      return this.record.tabId;
    }

    get busy() {
      return !!(this.record.task && !this.record.task.captured);
    }

    /** Holds nothing: no attempt in hand, no outcome the hub has not acknowledged. */
    get idle() {
      return !this.busy && !this.record.unacked.length;
    }

    log(text) {
      this.orch.log(`slot ${this.n}: ${text}`);
    }

    /** Serialise every change of the record: read-modify-write, then a durable save. */
    update(change) {
      const next = this.chain.then(async () => {
        const changed = change(this.record);
        if (changed) this.record = await this.orch.store.saveSlot(changed);
        // A slot on its way out that now holds nothing (its outcome acknowledged, its attempt
        // cancelled or given back) closes. While disconnected it waits for the welcome: the
        // hello is what tells the hub an attempt was given back.
        if (changed && this.draining && !this.retired && this.idle && this.conn && this.conn.isOpen) this.orch.adjustSlots().catch(() => {});
        return this.record;
      });
      this.chain = next.catch((err) => this.log(`saving state: ${err.message}`));
      return next;
    }

    // -- start-up and recovery -----------------------------------------------------------

    async start() {
      if (this.started) return; // one connection per slot, however many callers
      this.started = true;
      const { inflight } = this.orch.lib;
      const task = this.record.task;
      let tabAlive = await this.tabExists();
      let pageTask = null;
      if (tabAlive) {
        const pong = await this.ping().catch(() => null);
        if (pong) {
          this.noteReady(pong);
          pageTask = pong.task || null;
        }
      }
      const plan = inflight.recoveryPlan(task, pageTask, tabAlive);
      if (task) this.log(`recovering ${task.task_id}/${task.attempt} (stage ${task.stage}): ${plan}`);
      if (plan === "give_back" || plan === "drop") {
        // Nothing can be saved: leave it out of `holding`, and the hub requeues it at once.
        await this.update((r) => ({ ...r, task: null }));
      }
      this.pendingPlan = plan;
      this.connect();
    }

    connect() {
      if (this.retired) return; // closed while starting (fewer tabs wanted): no connection
      const { protocol, inflight, backoff, HubConnection } = this.orch.lib;
      if (this.conn) this.conn.close("restart", "reconnecting", { reconnect: false });
      this.sentKeys.clear();
      this.awaiting = [];
      this.receivedRefs = new Set();
      this.conn = new HubConnection({
        url: this.orch.settings.hubUrl,
        WebSocketImpl: this.orch.WebSocketImpl,
        protocol,
        backoff,
        log: (t) => this.log(t),
        makeHello: () =>
          protocol.hello({
            token: this.orch.settings.token,
            workerId: this.workerId,
            accountId: this.orch.accountId(),
            tabId: this.tabId,
            instanceId: this.orch.instanceId,
            holding: inflight.holding(this.record),
          }),
        onWelcome: () => this.onWelcome(),
        onMessage: (msg) => this.onHubMessage(msg),
        onState: (state, detail, code) => {
          this.connState = state;
          this.connDetail = state === "open" ? "" : detail || "";
          if (state !== "open") {
            this.sentKeys.clear();
            this.awaiting = [];
            // The hub sends a reference again on the next connection before an assign needs it.
            this.receivedRefs = new Set();
          }
          if (code === 4001) this.connDetail = "the hub refused the pairing token: pair again from the desktop app";
          this.orch.publish();
        },
      });
      this.conn.connect();
    }

    async onWelcome() {
      this.lastStatusAt = 0;
      this.sendStatus(true);
      try {
        await this.ensureTab();
      } catch (err) {
        this.log(`tab: ${err.message}`);
      }
      const plan = this.pendingPlan;
      this.pendingPlan = null;
      const task = this.record.task;
      if (task && !task.captured && !this.running) {
        if (plan === "resume") this.runTask({ resume: true });
        else if (plan === "rerun" || plan === "rerun_new_tab") this.runTask({});
        else if (plan === "wait") {
          /* the page works on it and will report */
        } else if (plan == null) {
          // A reconnect within this service worker's life: is the page still on it?
          const pong = await this.ping().catch(() => null);
          const pageTask = pong && pong.task;
          const same = pageTask && pageTask.task_id === task.task_id && pageTask.attempt === task.attempt;
          if (!same) this.runTask({ resume: this.orch.lib.inflight.promptSent(task) });
        }
      }
      this.deliver();
      if (this.draining && this.idle) this.orch.adjustSlots().catch(() => {});
    }

    async tabExists() {
      if (this.tabId == null) return false;
      try {
        const tab = await this.orch.chrome.tabs.get(this.tabId);
        return !!tab && !tab.discarded;
      } catch (_) {
        return false;
      }
    }

    async ping() {
      if (this.tabId == null) throw new Error("no tab");
      return withTimeout(this.orch.chrome.tabs.sendMessage(this.tabId, { type: "ng.ping" }), PING_TIMEOUT_MS, "ping");
    }

    noteReady(info) {
      if (info.url) this.url = info.url;
      if (typeof info.page_id === "string") this.pageId = info.page_id;
      if (typeof info.memory === "number") this.memoryBytes = Math.round(info.memory);
      if (info.health) this.setHealth(info.health, info.detail || "");
    }

    setHealth(health, detail) {
      const before = this.health;
      this.health = health;
      this.healthDetail = detail || "";
      if (before !== health) {
        this.sendStatus();
        this.orch.publish();
        // Logged in again: a new hello lifts the hub's login block for this worker.
        if (before === "logged_out" && health === "ok" && this.conn && this.conn.isOpen) {
          this.log("logged in again: reconnecting so the hub sends work again");
          this.conn.close("restart", "logged in again", { reconnect: true });
        }
      }
    }

    /**
     * Open (or adopt) this slot's tab and wait until its content script says it is ready.
     * Concurrent callers (the welcome, an assignment, a closed tab) share one attempt, so a
     * slot never opens two tabs.
     */
    ensureTab() {
      if (!this.tabPromise) {
        this.tabPromise = this.openOrAdoptTab().finally(() => {
          this.tabPromise = null;
        });
      }
      return this.tabPromise;
    }

    /**
     * ensureTab, retried for a while: a tab that cannot be opened right now (the browser is
     * starting, its window is gone) is the extension's problem, not the task's, and must not
     * burn the task's failure budget in a burst of instant errors.
     */
    async acquireTab() {
      const giveUpAt = Date.now() + TAB_RETRY_MS;
      for (let wait = 1000; ; wait = Math.min(wait * 2, 10000)) {
        try {
          if (!(await this.tabExists())) await this.ensureTab();
          return;
        } catch (err) {
          this.setHealth("crashed", `cannot open a ChatGPT tab: ${err.message}`);
          if (Date.now() + wait > giveUpAt) throw err;
          await sleep(wait);
        }
      }
    }

    async openOrAdoptTab() {
      const chrome = this.orch.chrome;
      while (this.cleaning) await this.cleaning; // the tab is being reloaded for memory
      if (await this.tabExists()) {
        const pong = await this.ping().catch(() => null);
        if (pong) {
          this.noteReady(pong);
          return;
        }
        // A tab that was open before the extension (re)loaded has no content script yet.
        await chrome.scripting.executeScript({ target: { tabId: this.tabId }, files: CONTENT_FILES }).catch((err) =>
          this.log(`injecting the content script: ${err.message}`)
        );
        const again = await this.ping().catch(() => null);
        if (again) {
          this.noteReady(again);
          return;
        }
        await chrome.tabs.reload(this.tabId).catch(() => {});
        await this.waitReady(0);
        return;
      }
      const seen = this.readyCount;
      // From the turn to the saved tab id, one promise: a restart of the slots waits for it,
      // so the next generation adopts this tab instead of leaving it open and making another.
      const creating = (async () => {
        await this.orch.tabOpeningTurn();
        if (this.retired) throw new Error("this slot was stopped");
        this.setHealth("loading", "opening a ChatGPT tab");
        const tab = await chrome.tabs.create({ url: CHATGPT_URL, pinned: true, active: false });
        await chrome.tabs.update(tab.id, { autoDiscardable: false }).catch(() => {});
        this.orch.tabToSlot.set(tab.id, this);
        await this.update((r) => ({ ...r, tabId: tab.id, tabOpenedAt: Date.now(), turns: this.orch.lib.inflight.freshTurns() }));
        this.log(`opened tab ${tab.id}`);
      })();
      this.creatingTab = creating.catch(() => {});
      await creating;
      await this.waitReady(seen);
    }

    /** Wait for an `ng.ready` newer than `seen` (a fresh page load). */
    waitReady(seen, timeoutMs = READY_TIMEOUT_MS) {
      if (this.readyCount > seen) return Promise.resolve();
      return withTimeout(
        new Promise((resolve) => this.readyWaiters.push({ seen, resolve })),
        timeoutMs,
        "waiting for the ChatGPT page to load"
      );
    }

    onPageReady(msg) {
      this.readyCount++;
      this.pingFailures = 0;
      this.noteReady(msg);
      const waiters = this.readyWaiters;
      this.readyWaiters = [];
      for (const w of waiters) {
        if (this.readyCount > w.seen) w.resolve();
        else this.readyWaiters.push(w);
      }
      // A page that reloaded by itself mid-task lost the driver: resume without paying again.
      const task = this.record.task;
      if (task && !task.captured && !this.running && this.conn && this.conn.isOpen && msg.health === "ok") {
        this.ping()
          .then((pong) => {
            const t = pong && pong.task;
            if (!t || t.task_id !== task.task_id || t.attempt !== task.attempt) {
              this.runTask({ resume: this.orch.lib.inflight.promptSent(task) });
            }
          })
          .catch(() => {});
      }
    }

    // -- the hub's messages ------------------------------------------------------------------

    onHubMessage(msg) {
      if (this.retired) return; // a slot of a stopped generation: its successor handles the hub
      switch (msg.type) {
        case "assign":
          return this.onAssign(msg);
        case "reference_image":
          // Claimed before the first await: the assign that follows at once waits for it.
          this.receivedRefs.add(msg.sha256);
          return this.orch.receiveReference(msg, (text) => this.log(text));
        case "ack":
          return this.onAck(msg);
        case "cancel":
          return this.onCancel(msg);
        case "cleanup":
          return this.onCleanup(msg);
        case "configure":
          return this.orch.applyConfigure(msg);
        case "error":
          return this.onHubError(msg);
        case "bye":
          return this.orch.onHubBye(this, msg);
        default:
          this.log(`ignored hub message ${msg.type}`);
      }
    }

    async onAssign(msg) {
      const { inflight, protocol } = this.orch.lib;
      const current = this.record.task;
      if (current && current.task_id === msg.task_id && current.attempt === msg.attempt) return; // repeated
      if (this.record.unacked.some((u) => u.task_id === msg.task_id && u.attempt === msg.attempt)) return;
      if (current && !current.captured && !current.cancelled) {
        // The hub sends one attempt at a time: a new one means it has given the old one up
        // (e.g. it was not in our `holding` after a reconnect). Stop it in the page; if its
        // image still arrives it is sent as a late result and judged by the hub.
        this.log(`the hub moved on from ${current.task_id}/${current.attempt} to ${msg.task_id}/${msg.attempt}`);
        if (this.tabId != null) {
          this.orch.chrome.tabs.sendMessage(this.tabId, { type: "ng.cancel", task_id: current.task_id, attempt: current.attempt }).catch(() => {});
        }
      }
      await this.update((r) => ({ ...r, task: inflight.taskFromAssign(msg, Date.now()) }));
      this.conn.send(protocol.progress({ task_id: msg.task_id, attempt: msg.attempt, stage: "accepted" }));
      this.sendStatus();
      this.orch.publish();
      this.runTask({});
    }

    /**
     * Drive the task in the tab: put the tab where the task must start (new chat, or the
     * sequence's conversation), then hand the task to the content script. Progress and the
     * outcome come back as runtime messages (onPageProgress / onPageDone).
     */
    async runTask({ resume = false }) {
      // A reload or new chat for memory is under way: hand the task over once the tab is back.
      while (this.cleaning) await this.cleaning;
      if (this.running) {
        // A hand-over is in progress (navigation, page load): run again after it, in case
        // the task it hands over is no longer the one in the record.
        this.runAgain = { resume };
        return;
      }
      this.running = true;
      const { inflight } = this.orch.lib;
      const chrome = this.orch.chrome;
      try {
        let task = this.record.task;
        if (!task || task.captured || task.cancelled) return;
        const resuming = !!(resume && task.conversation_url);
        // The hub's reference_images flag off: the prompt goes without its reference images.
        const withReferences = this.orch.flag("reference_images");
        if (!withReferences && !resuming && task.references && task.references.length) {
          this.log(`${task.task_id}/${task.attempt}: sent without its ${task.references.length} reference image(s) (the hub's reference_images flag is off)`);
        }
        await this.acquireTab();
        // Never navigate away from a page that is already working on this very attempt: its
        // prompt may be sent, and a new chat would pay for it twice.
        const pong = await this.ping().catch(() => null);
        const pageTask = pong && pong.task;
        if (pageTask && pageTask.task_id === task.task_id && pageTask.attempt === task.attempt) return;
        if (!resuming && withReferences && task.references && task.references.length) {
          // Every reference must be here and checked before the page is given the task: without them
          // the prompt must not be sent (it would be paid for and drawn without the style).
          const missing = await this.orch.missingReferences(task.references);
          if (missing.length) {
            const names = missing.map((ref) => `"${ref.name}" (sha256 ${ref.sha256.slice(0, 12)}…)`).join(", ");
            const what = `missing reference image${missing.length === 1 ? "" : "s"} ${names}`;
            this.log(`${task.task_id}/${task.attempt}: ${what}`);
            await this.onPageDone({ type: "ng.done", task_id: task.task_id, attempt: task.attempt, outcome: "error", kind: "page_error", message: `${what}: never received from the hub, or failed the size/sha256 check; the prompt was not sent` });
            return;
          }
        }
        let target = null;
        let newChat = true;
        let plan = null;
        if (resuming) {
          target = task.conversation_url;
          newChat = false;
        } else {
          plan = inflight.chatPlan(this.orch.chatMode(), this.record, task);
          newChat = plan.newChat;
          target = plan.newChat ? CHATGPT_URL : plan.url;
        }
        const chatKey = plan ? (plan.key ?? null) : (task.chat_key ?? null);
        // Attachments of an attempt that failed before sending may still sit in the composer:
        // load the conversation again rather than attach on top of them.
        const reload = this.composerDirty && !resuming;
        if (target && (reload || !(this.url && sameUrl(this.url, target) && !newChat))) {
          await this.update((r) => {
            if (!r.task) return null;
            const next = { ...r, task: inflight.advance(r.task, "navigating"), turns: inflight.turnsAfterNavigation(r.turns, { newChat, url: target }) };
            return newChat && chatKey ? inflight.conversationStarted(next, chatKey) : next;
          });
          const seen = this.readyCount;
          await chrome.tabs.update(this.tabId, { url: target });
          this.composerDirty = false;
          await this.waitReady(seen);
        }
        task = this.record.task;
        if (!task || task.cancelled) return;
        if (this.health === "logged_out") {
          await this.onPageDone({ type: "ng.done", task_id: task.task_id, attempt: task.attempt, outcome: "error", kind: "login_required", message: this.healthDetail || "ChatGPT shows the login page" });
          return;
        }
        // Attached once per chat: all of them in a new chat, the new ones in a continued one.
        const attach = plan && withReferences ? inflight.referencesToAttach(plan, this.record, task.references) : [];
        await this.update((r) =>
          r.task ? { ...r, task: inflight.advance({ ...r.task, new_chat: newChat, chat_key: chatKey, attach: attach.map((ref) => ref.sha256) }, "running") } : null
        );
        const deadlineMs = Math.min(Date.now() + DEFAULT_TASK_MS, task.deadline ? task.deadline * 1000 + 60000 : Infinity);
        const run = {
          type: "ng.run",
          task: {
            task_id: task.task_id,
            attempt: task.attempt,
            prompt: task.prompt,
            new_chat: newChat,
            deadline_ms: Math.max(deadlineMs, Date.now() + 60000),
            references: attach.length ? attach : undefined,
            resume: resuming ? { conversation_url: task.conversation_url, before_image_ids: task.before_image_ids || [] } : undefined,
          },
        };
        for (let i = 0; i < RUN_ACCEPT_RETRIES; i++) {
          const reply = await withTimeout(chrome.tabs.sendMessage(this.tabId, run), PING_TIMEOUT_MS, "ng.run").catch((err) => ({ accepted: false, reason: err.message }));
          if (reply && reply.accepted) return;
          if (reply && reply.task && reply.task.task_id === task.task_id) return; // it already has it
          this.log(`the page did not take the task: ${reply && reply.reason}`);
          await sleep(2000);
        }
        await this.onPageDone({ type: "ng.done", task_id: task.task_id, attempt: task.attempt, outcome: "error", kind: "page_error", message: "the ChatGPT tab did not accept the task" });
      } catch (err) {
        this.log(`running the task: ${err.message}`);
        const task = this.record.task;
        if (task && !task.captured) {
          if (inflight.promptSent(task)) {
            this.runLater(); // the page will report, or the health check replaces the tab
          } else {
            await this.onPageDone({ type: "ng.done", task_id: task.task_id, attempt: task.attempt, outcome: "error", kind: "page_error", message: `the ChatGPT tab failed: ${err.message}` });
          }
        }
      } finally {
        this.running = false;
        const again = this.runAgain;
        this.runAgain = null;
        if (again) this.runTask(again);
      }
    }

    runLater() {
      clearTimeout(this.rerunTimer);
      this.rerunTimer = setTimeout(() => {
        const task = this.record.task;
        if (task && !task.captured && !this.running) this.runTask({ resume: this.orch.lib.inflight.promptSent(task) });
      }, 5000);
    }

    async onAck(msg) {
      if (msg.task_id == null) return;
      const { inflight } = this.orch.lib;
      const key = inflight.attemptKey(msg.task_id, msg.attempt);
      this.awaiting = this.awaiting.filter((k) => k !== key);
      this.sentKeys.delete(key);
      const entry = this.record.unacked.find((u) => u.key === key);
      await this.update((r) => inflight.acknowledge(r, msg.task_id, msg.attempt));
      if (entry && entry.kind === "image") await this.orch.store.deleteImage(key).catch(() => {});
      if (!this.record.task) this.orch.pruneReferences().catch((err) => this.log(`pruning reference images: ${err.message}`));
      this.sendStatus();
      this.orch.publish();
    }

    async onHubError(msg) {
      this.log(`hub error ${msg.code}: ${msg.message}`);
      // About a cleanup_done (its `re`), not about an outcome: nothing in `awaiting` to match.
      if (msg.field === "re") return;
      if (!this.awaiting.length) return;
      const key = this.awaiting.shift();
      this.sentKeys.delete(key);
      if (FORGET_ON_ERROR.has(msg.code)) {
        const entry = this.record.unacked.find((u) => u.key === key);
        if (entry) {
          this.log(`the hub cannot use ${key} (${msg.code}): forgetting it`);
          await this.onAck({ task_id: entry.task_id, attempt: entry.attempt });
        }
      } else {
        // e.g. internal (the hub could not write it yet): keep it and send it again later.
        setTimeout(() => this.deliver(), 10000);
      }
    }

    async onCancel(msg) {
      const task = this.record.task;
      if (!task || task.task_id !== msg.task_id || task.attempt !== msg.attempt) return;
      this.log(`hub cancelled ${msg.task_id}/${msg.attempt}: ${msg.reason || ""}`);
      await this.update((r) => (r.task ? { ...r, task: { ...r.task, cancelled: true } } : null));
      if (this.tabId != null) {
        this.orch.chrome.tabs.sendMessage(this.tabId, { type: "ng.cancel", task_id: msg.task_id, attempt: msg.attempt }).catch(() => {});
      }
      if (!task.captured) await this.update((r) => ({ ...r, task: null }));
      this.sendStatus();
      this.orch.publish();
    }

    // -- memory cleanup (the hub's memory governor) --------------------------------------------

    /**
     * `cleanup`: answered by exactly one `cleanup_done`, on the connection the request came
     * on (after a reconnect the hub has already given up on it, and an answer it no longer
     * expects would be refused).
     */
    async onCleanup(msg) {
      const { protocol } = this.orch.lib;
      const conn = this.conn;
      const ws = conn && conn.ws;
      let answer;
      try {
        answer = await this.cleanUp(msg.action, msg.reason);
      } catch (err) {
        answer = { ok: false, detail: `cleanup failed: ${err && err.message ? err.message : err}` };
      }
      this.log(`cleanup ${msg.action} (${msg.request_id}): ${answer.ok ? "done" : "not done"}${answer.detail ? ` — ${answer.detail}` : ""}`);
      if (!conn || this.conn !== conn || conn.ws !== ws || !conn.isOpen) {
        this.log(`cleanup ${msg.request_id}: the connection it came on is gone; no answer`);
        return;
      }
      conn.send(protocol.cleanupDone({ re: msg.request_id, action: msg.action, ...answer }));
      if (msg.action === "reload_tab" || msg.action === "new_chat") this.sendStatus(true); // health and memory of the fresh page
    }

    /** Why this slot cannot reload or renavigate its tab now, or null. Synchronous. */
    refuseRefresh() {
      if (this.cleaning) return "another cleanup is under way in this tab";
      const task = this.record.task;
      if (task && !task.captured) return `busy with ${task.task_id}/${task.attempt} (stage ${task.stage})`;
      if (this.running) return "busy handing a task to the page";
      if (this.tabId == null || this.tabPromise) return "the tab is not open yet";
      return null;
    }

    /** The answer's fields ({ok, heapBefore?, heapAfter?, freedBytes?, detail?}). */
    async cleanUp(action, reason) {
      if (reason) this.log(`cleanup ${action} asked: ${reason}`);
      if (action === "drop_images") return this.dropImages();
      if (action !== "reload_tab" && action !== "new_chat") return { ok: false, detail: `unknown cleanup action ${action}` };
      const refused = this.refuseRefresh();
      if (refused) return { ok: false, detail: refused };
      // Claimed before the first await: an assignment arriving from now on waits (runTask)
      // until the tab is back, and the health check leaves the tab alone.
      let release;
      this.cleaning = new Promise((resolve) => (release = resolve));
      try {
        return await this.refreshTab(action);
      } finally {
        this.cleaning = null;
        release();
      }
    }

    /** reload_tab / new_chat in an idle tab: load it again, wait for a healthy fresh page. */
    async refreshTab(action) {
      const chrome = this.orch.chrome;
      const { inflight } = this.orch.lib;
      // One deadline for the whole of it, so the answer is well inside the hub's 75 s wait.
      const readyMs = (this.orch.timings && this.orch.timings.cleanupReadyMs) || CLEANUP_READY_MS;
      const deadline = Date.now() + readyMs;
      const before = await this.ping().catch(() => null);
      if (before) {
        this.noteReady(before);
        // The page is working on something the record does not know of: never throw it away.
        if (before.task) return { ok: false, detail: `busy: the page works on ${before.task.task_id}/${before.task.attempt}` };
      }
      const heapBefore = this.memoryBytes;
      const oldPage = this.pageId;
      const seen = this.readyCount;
      this.setHealth("loading", action === "reload_tab" ? "reloading the tab to free memory" : "opening a new chat to free memory");
      try {
        if (action === "new_chat") {
          // A fresh conversation: the turn count starts again, and a per_sequence sequence
          // continues in the new chat (the governor asked for the memory, not the context).
          await this.update((r) => ({ ...r, turns: inflight.freshTurns(), sequence: null, conversations: {} }));
          await chrome.tabs.update(this.tabId, { url: CHATGPT_URL });
        } else {
          await chrome.tabs.reload(this.tabId);
        }
      } catch (err) {
        return { ok: false, heapBefore, detail: `${action === "new_chat" ? "navigating" : "reloading"} the tab failed: ${err.message}` };
      }
      const health = await this.waitFreshPage(oldPage, seen, deadline);
      if (health === "logged_out") return { ok: false, heapBefore, detail: "the page came back logged out" };
      if (health !== "ok") {
        return { ok: false, heapBefore, detail: `the page did not come back healthy within ${readyMs / 1000} s (${health || "no page"})` };
      }
      const after = await this.ping().catch(() => null);
      if (after) this.noteReady(after);
      const heapAfter = after && typeof after.memory === "number" ? Math.round(after.memory) : undefined;
      return { ok: true, heapBefore, heapAfter };
    }

    /**
     * Wait until a page load newer than `seen` (and not the page `oldPage`) reports `ok`, or
     * the login page (that will not change by itself), or the deadline passes. Returns the
     * fresh page's last health, or null when no fresh page reported at all.
     */
    async waitFreshPage(oldPage, seen, deadline) {
      const fresh = () => this.readyCount > seen && (this.pageId == null || this.pageId !== oldPage);
      for (;;) {
        if (fresh() && (this.health === "ok" || this.health === "logged_out")) return this.health;
        const left = deadline - Date.now();
        if (left <= 0) return fresh() ? this.health : null;
        await this.nextReady(Math.min(left, 1000));
      }
    }

    /** Resolves at the next `ng.ready`, or after `ms`. */
    nextReady(ms) {
      return new Promise((resolve) => {
        const waiter = { seen: this.readyCount, resolve: () => done() };
        const timer = setTimeout(() => done(), ms);
        const done = () => {
          clearTimeout(timer);
          this.readyWaiters = this.readyWaiters.filter((w) => w !== waiter);
          resolve();
        };
        this.readyWaiters.push(waiter);
      });
    }

    /** drop_images: forget the bytes of every stored image the hub has acknowledged. */
    async dropImages() {
      const keep = await this.orch.referencedImageKeys();
      const { count, bytes } = await this.orch.store.dropImages(keep);
      return { ok: true, freedBytes: bytes, detail: count ? `dropped ${count} acknowledged image(s)` : "no acknowledged image was still stored" };
    }

    // -- the page's messages ----------------------------------------------------------------

    async onPageProgress(msg) {
      const { inflight, protocol } = this.orch.lib;
      const task = this.record.task;
      if (!task || task.task_id !== msg.task_id || task.attempt !== msg.attempt) return;
      const fields = {};
      if (msg.conversation_url) fields.conversation_url = msg.conversation_url;
      if (Array.isArray(msg.before_image_ids)) fields.before_image_ids = msg.before_image_ids.slice(0, 500);
      await this.update((r) => {
        if (!r.task) return null;
        let next = { ...r, task: inflight.advance(r.task, msg.stage, fields) };
        const key = r.task.chat_key !== undefined ? r.task.chat_key : inflight.conversationKey(this.orch.chatMode(), r.task.metadata);
        const firstSend = msg.stage === "submitted" && !inflight.promptSent(r.task);
        // One more prompt in this conversation (counted once: a repeated `submitted` finds the
        // task already past it).
        if (firstSend) next.turns = inflight.turnsAfterSend(r.turns, fields.conversation_url);
        else if (fields.conversation_url) next.turns = inflight.turnsWithUrl(r.turns, fields.conversation_url);
        // The conversation kept for the key: its URL, and the references its prompt carried.
        if (key && firstSend) next = inflight.referencesSent(next, key, r.task.attach || [], fields.conversation_url);
        else if (key && fields.conversation_url) next = inflight.conversationUrlKnown(next, key, fields.conversation_url);
        return next;
      });
      if (msg.conversation_url) this.url = msg.conversation_url;
      // The hub's stages: attaching reference images is still before the prompt is sent, so
      // it is reported as typing (nothing paid yet), with what is being done as the detail.
      const wire = msg.stage === "attaching" ? "typing" : msg.stage;
      if (["typing", "submitted", "generating", "downloading"].includes(wire)) {
        const detail = msg.stage === "attaching" ? `attaching ${msg.count || "the"} reference image${msg.count === 1 ? "" : "s"}` : undefined;
        this.conn.send(
          protocol.progress({ task_id: msg.task_id, attempt: msg.attempt, stage: wire, percent: msg.percent, conversation_url: msg.conversation_url, detail })
        );
      }
    }

    /** Store the outcome durably first, then answer the page, then send it to the hub. */
    async onPageDone(msg) {
      const { inflight, protocol } = this.orch.lib;
      const key = inflight.attemptKey(msg.task_id, msg.attempt);
      if (this.record.unacked.some((u) => u.key === key)) return { stored: true }; // a repeat
      const task = this.record.task;
      const isCurrent = task && task.task_id === msg.task_id && task.attempt === msg.attempt;
      if (isCurrent && msg.outcome !== "image" && !inflight.promptSent(task) && (task.attach || []).length) this.composerDirty = true;
      if (msg.outcome === "image" && msg.image && msg.image.base64) {
        // Referenced from before the write until record.unacked names it: drop_images and the
        // quota pruning never take an image that is being stored.
        this.storingKeys.add(key);
        try {
          await this.storeImage(msg, key, task, isCurrent);
        } finally {
          this.storingKeys.delete(key);
        }
      } else {
        const kind = protocol.TASK_ERROR_KINDS.includes(msg.kind) ? msg.kind : "page_error";
        const error = { kind, message: protocol.clip(msg.message || ""), retry_after: msg.retry_after, conversation_url: msg.conversation_url };
        await this.update((r) => ({
          ...r,
          unacked: [...r.unacked, { task_id: msg.task_id, attempt: msg.attempt, kind: "error", key, error }],
          task: isCurrent && r.task ? inflight.advance({ ...r.task, captured: true }, "captured") : r.task,
        }));
        if (kind === "rate_limited") {
          const seconds = typeof msg.retry_after === "number" ? msg.retry_after : 15 * 60;
          this.cooldownUntil = Date.now() + seconds * 1000;
          this.orch.noteCooldown(this.cooldownUntil);
        }
        if (kind === "login_required") this.setHealth("logged_out", msg.message || "logged out");
      }
      this.deliver();
      this.sendStatus();
      this.orch.publish();
      return { stored: true };
    }

    /** An image outcome: bytes to IndexedDB first, then the record names it (unacked). */
    async storeImage(msg, key, task, isCurrent) {
      const { inflight, protocol } = this.orch.lib;
      const bytes = protocol.base64ToBytes(msg.image.base64);
      const sha256 = await protocol.sha256Hex(bytes);
      const mime = protocol.sniffMime(bytes) || msg.image.mime || "image/png";
      await this.orch.store.putImage(key, {
        bytes: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
        meta: {
          task_id: msg.task_id,
          attempt: msg.attempt,
          sha256,
          size: bytes.length,
          mime,
          conversation_url: msg.conversation_url || (task && task.conversation_url),
          image_id: msg.image.image_id,
          width: msg.image.width,
          height: msg.image.height,
          elapsed: msg.elapsed,
        },
      });
      await this.update((r) => ({
        ...r,
        unacked: [...r.unacked, { task_id: msg.task_id, attempt: msg.attempt, kind: "image", key }],
        task: isCurrent && r.task ? inflight.advance({ ...r.task, captured: true }, "captured") : r.task,
      }));
    }

    /** Send every stored outcome the hub has not acknowledged (once per connection). */
    async deliver() {
      if (!this.conn || !this.conn.isOpen) return;
      const { protocol } = this.orch.lib;
      for (const entry of this.record.unacked) {
        if (this.sentKeys.has(entry.key)) continue;
        // Claimed before the await below: a deliver() running alongside (a welcome and a
        // finished page at once) skips it instead of sending the image twice.
        this.sentKeys.add(entry.key);
        if (entry.kind === "image") {
          const image = await this.orch.store.getImage(entry.key).catch(() => null);
          if (!this.conn || !this.conn.isOpen) return;
          if (!image) {
            this.log(`image ${entry.key} is missing from storage; giving the attempt up`);
            this.conn.send(protocol.taskError({ task_id: entry.task_id, attempt: entry.attempt, kind: "page_error", message: "the captured image was lost from the extension's storage" }));
            this.awaiting.push(entry.key);
            continue;
          }
          const bytes = new Uint8Array(image.bytes);
          const sent = this.conn.sendImage(protocol.resultAnnouncement(image.meta), protocol.imageFrame(entry.task_id, entry.attempt, bytes));
          if (!sent) {
            this.sentKeys.delete(entry.key);
            return;
          }
        } else if (!this.conn.send(protocol.taskError({ task_id: entry.task_id, attempt: entry.attempt, ...entry.error }))) {
          this.sentKeys.delete(entry.key);
          return;
        }
        this.awaiting.push(entry.key);
      }
    }

    // -- health --------------------------------------------------------------------------

    /** `status` to the hub: on change, at most every 5 s (the last state always gets out). */
    sendStatus(force = false) {
      if (!this.conn || !this.conn.isOpen) return;
      const now = Date.now();
      const wait = this.lastStatusAt + STATUS_MIN_GAP_MS - now;
      if (!force && wait > 0) {
        if (!this.statusTimer) {
          this.statusTimer = setTimeout(() => {
            this.statusTimer = null;
            this.sendStatus(true);
          }, wait);
        }
        return;
      }
      this.lastStatusAt = now;
      const task = this.record.task;
      const details = [];
      if (this.draining) details.push(this.draining);
      if (this.healthDetail) details.push(this.healthDetail);
      if (this.orch.selectorProblem) details.push(this.orch.selectorProblem);
      if (this.cooldownUntil > now) details.push(`cooling down until ${new Date(this.cooldownUntil).toISOString()}`);
      this.conn.send(
        this.orch.lib.protocol.status({
          // A slot on its way out says its tab is going (not ok/loading): the hub sends it no
          // new assign, and the attempt in hand goes on (docs/protocol.md, status).
          health: this.draining ? "discarded" : this.health,
          busy: this.busy,
          memoryBytes: this.memoryBytes,
          taskId: task ? task.task_id : undefined,
          url: this.url,
          detail: details.join("; "),
          conversationTurns: this.record.turns ? this.record.turns.count : 0,
        })
      );
    }

    /** Periodic check: is the tab there and does its page answer? */
    async checkHealth() {
      const chrome = this.orch.chrome;
      if (this.tabId == null || !this.conn || !this.conn.isOpen) return;
      if (this.cleaning) return; // reloading on purpose: the cleanup watches the page
      let tab = null;
      try {
        tab = await chrome.tabs.get(this.tabId);
      } catch (_) {
        return this.onTabGone("the tab was closed");
      }
      if (tab.discarded) return this.onTabDiscarded();
      if (tab.status !== "complete") return;
      try {
        const pong = await this.ping();
        this.pingFailures = 0;
        this.noteReady(pong);
        this.sendStatus(); // a fresh memory figure for the hub, at the health-check pace
        const task = this.record.task;
        if (task && !task.captured && !task.cancelled && !this.running && (!pong.task || pong.task.task_id !== task.task_id)) {
          this.runTask({ resume: this.orch.lib.inflight.promptSent(task) });
        }
      } catch (err) {
        this.pingFailures++;
        if (this.pingFailures >= 2) {
          // Loaded but silent twice in a row: a crashed renderer or a hung page.
          this.setHealth(this.pingFailures >= 3 ? "crashed" : "unresponsive", `the page does not answer (${err.message})`);
          if (this.pingFailures >= 3) {
            this.log("reloading an unresponsive tab");
            this.pingFailures = 0;
            await chrome.tabs.reload(this.tabId).catch(() => {});
          }
        }
      }
    }

    async onTabDiscarded() {
      this.setHealth("discarded", "the browser discarded the tab to save memory");
      await this.orch.chrome.tabs.update(this.tabId, { autoDiscardable: false }).catch(() => {});
      await this.orch.chrome.tabs.reload(this.tabId).catch(() => {});
    }

    /**
     * The tab is gone (closed by the user, crashed away). Open a new one; the task in hand is
     * resumed there if its conversation is known, rerun if its prompt never left, and given
     * back to the hub otherwise.
     */
    async onTabGone(reason) {
      const { inflight } = this.orch.lib;
      this.orch.tabToSlot.delete(this.tabId);
      this.log(reason);
      await this.update((r) => ({ ...r, tabId: null }));
      this.url = null;
      this.setHealth("loading", reason);
      if (this.retiring) return;
      const task = this.record.task;
      const plan = inflight.recoveryPlan(task, null, false);
      if (plan === "give_back") {
        this.log(`giving ${task.task_id}/${task.attempt} back to the hub`);
        await this.update((r) => ({ ...r, task: null }));
        this.pendingPlan = null;
        // bye tab_closed: the hub requeues the attempt now; then a fresh hello with a new tab.
        if (this.conn) this.conn.close("tab_closed", reason, { reconnect: true });
        return;
      }
      try {
        await this.ensureTab();
      } catch (err) {
        this.log(`replacing the tab: ${err.message}`);
        return;
      }
      if (plan === "resume") this.runTask({ resume: true });
      else if (plan === "rerun" || plan === "rerun_new_tab") this.runTask({});
    }

    /**
     * Fewer tabs are wanted, but this slot holds an attempt or an unacknowledged outcome:
     * finish it, deliver it, then close (the `update` that leaves it idle calls adjustSlots).
     * Meanwhile its status tells the hub to send it nothing new.
     */
    drain(reason) {
      if (this.draining) return;
      this.draining = `closing this tab once its attempt is delivered: ${reason}`;
      this.log(this.draining);
      this.sendStatus(true);
    }

    /** More tabs are wanted again: this slot stays. */
    keep() {
      if (!this.draining) return;
      this.draining = null;
      this.log("staying open: more tabs are wanted again");
      this.sendStatus(true);
    }

    async retire(detail = "fewer tabs requested") {
      this.retiring = true;
      this.retired = true;
      clearTimeout(this.statusTimer);
      clearTimeout(this.rerunTimer);
      if (this.conn) this.conn.close("user", detail);
      await this.creatingTab; // a tab being opened right now: close it too
      const tabId = this.tabId;
      if (tabId != null) {
        this.orch.tabToSlot.delete(tabId);
        await this.orch.chrome.tabs.remove(tabId).catch(() => {});
      }
    }

    snapshot() {
      const task = this.record.task;
      return {
        slot: this.n,
        worker_id: this.workerId,
        tab_id: this.tabId,
        tab_opened_at: this.record.tabOpenedAt || null,
        health: this.health,
        busy: this.busy,
        task_id: task ? task.task_id : null,
        stage: task ? task.stage : null,
        unacked: this.record.unacked.length,
        conversation_turns: this.record.turns ? this.record.turns.count : 0,
        connection: this.connState,
        detail: [this.draining, this.connDetail, this.healthDetail].filter(Boolean).join("; "),
        cooldown_until: this.cooldownUntil > Date.now() ? this.cooldownUntil : null,
      };
    }
  }

  /** `keys.sendButton[2]: <what is wrong>`, from validateTable's {key, index, message}. */
  function describeTableError(e) {
    if (typeof e === "string") return e;
    if (e.key == null) return e.message;
    return `keys.${e.key}${e.index != null ? `[${e.index}]` : ""}: ${e.message}`;
  }

  /** `multi_tab off, selector_updates on, …` for the log. */
  function describeFlags(flags) {
    return Object.entries(flags)
      .map(([name, value]) => `${name} ${value ? "on" : "off"}`)
      .join(", ");
  }

  function sameUrl(a, b) {
    try {
      const x = new URL(a);
      const y = new URL(b);
      return x.origin === y.origin && x.pathname.replace(/\/$/, "") === y.pathname.replace(/\/$/, "");
    } catch (_) {
      return a === b;
    }
  }

  class Orchestrator {
    /**
     * deps: chrome, store, lib {protocol, inflight, backoff, HubConnection, selectorTable},
     * WebSocketImpl, settings, installId, instanceId, hubConfig, log
     */
    constructor(deps) {
      Object.assign(this, deps);
      this.slots = new Map();
      this.tabToSlot = new Map();
      this.lastTabOpenAt = 0;
      this.tabTurn = Promise.resolve();
      this.slotsChain = Promise.resolve();
      this.cooldownUntil = 0;
      this.publishTimer = null;
      this.stopped = false;
      this.referenceWrites = new Map(); // sha256 → promise of a reference being checked/stored
    }

    // -- reference images ---------------------------------------------------------------------

    /**
     * A `reference_image` from the hub: decode, check size and sha256, store in IndexedDB.
     * Resolves true when stored. A frame that does not match is logged and kept nowhere: the
     * assign that lists it then fails with page_error (missingReferences).
     */
    receiveReference(msg, log = (text) => this.log(text)) {
      const { protocol } = this.lib;
      const sha = msg.sha256;
      const before = this.referenceWrites.get(sha) || Promise.resolve(false);
      const write = before
        .then(async () => {
          const check = await protocol.checkReference(msg);
          if (!check.ok) {
            log(`ignored a reference image: ${check.error}`);
            return false;
          }
          const bytes = check.bytes;
          await this.store.putReference({
            sha256: sha,
            name: msg.name,
            mime: msg.mime,
            size: bytes.length,
            bytes: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
          });
          return true;
        })
        .catch((err) => {
          log(`storing reference image ${sha}: ${err && err.message ? err.message : err}`);
          return false;
        });
      this.referenceWrites.set(sha, write);
      write.then(() => {
        if (this.referenceWrites.get(sha) === write) this.referenceWrites.delete(sha);
      });
      return write;
    }

    /** The references (of an assign) that are not stored, once any write under way is done. */
    async missingReferences(references) {
      const refs = references || [];
      await Promise.all(refs.map((ref) => this.referenceWrites.get(ref.sha256)));
      const stored = new Set(await this.store.referenceKeys().catch(() => []));
      return refs.filter((ref) => !stored.has(ref.sha256));
    }

    /** `ng.reference` from a page: the bytes to attach, as base64. */
    async readReference(sha256) {
      const { protocol } = this.lib;
      if (typeof sha256 !== "string" || !protocol.SHA256_PATTERN.test(sha256)) return { ok: false, error: "bad sha256" };
      await this.referenceWrites.get(sha256);
      const ref = await this.store.getReference(sha256).catch(() => null);
      if (!ref || !ref.bytes) return { ok: false, error: `reference image ${sha256} is not stored` };
      const bytes = new Uint8Array(ref.bytes);
      return { ok: true, sha256, name: ref.name, mime: ref.mime, size: bytes.length, base64: protocol.bytesToBase64(bytes) };
    }

    /**
     * Forget stored references nothing needs: not received on a slot's current connection
     * (the hub would not send it again there), not listed by a task in any slot record (a task
     * recovered after a restart gets no new assign), not being written. Run when a slot goes
     * idle and at start. The check runs per key at deletion time, so a reference arriving
     * meanwhile is kept.
     */
    async pruneReferences() {
      const { inflight } = this.lib;
      const stored = inflight.referencedShas(await this.store.loadAllSlots(10));
      const needed = (sha) => {
        if (stored.has(sha) || this.referenceWrites.has(sha)) return true;
        for (const slot of this.slots.values()) {
          if (slot.receivedRefs.has(sha)) return true;
          const task = slot.record.task;
          if (task && (task.references || []).some((ref) => ref.sha256 === sha)) return true;
        }
        return false;
      };
      const dropped = await this.store.dropReferences(needed);
      if (dropped) this.log(`forgot ${dropped} reference image(s) no task needs`);
      return dropped;
    }

    /**
     * Image keys that must stay stored: every slot record's unacknowledged outcomes (the
     * stored records too, so a slot being restarted loses nothing) and images being written.
     */
    async referencedImageKeys() {
      const keys = new Set();
      const records = await this.store.loadAllSlots(10);
      for (const record of [...records, ...[...this.slots.values()].map((s) => s.record)]) {
        for (const u of record.unacked || []) keys.add(u.key);
      }
      for (const slot of this.slots.values()) for (const key of slot.storingKeys) keys.add(key);
      return keys;
    }

    /** Stored settings that do not validate (edited by hand): shown, never connected with. */
    get settingsError() {
      return (this.settings && this.settings.error) || null;
    }

    accountId() {
      const { protocol } = this.lib;
      return protocol.safeId(this.settings.accountId, `chrome-${this.installId}`);
    }

    desiredTabs() {
      // The single-tab fallback: the hub's multi_tab flag off means one tab, whatever else says.
      if (!this.flag("multi_tab")) return 1;
      const n = (this.hubConfig && this.hubConfig.tabs) || this.settings.tabs || 1;
      return Math.max(1, Math.min(10, n));
    }

    /** The feature flags in force: the hub's (configure.flags, kept in hubConfig) over the defaults. */
    flags() {
      return { ...FLAG_DEFAULTS, ...((this.hubConfig && this.hubConfig.flags) || {}) };
    }

    flag(name) {
      return this.flags()[name] !== false;
    }

    /**
     * The hub's flags merged into the ones it sent before: a name it sends now takes its
     * value (a boolean; null forgets it, so its default is in force again), a name it leaves
     * out keeps the value it had. Names this version does not know, and values that are not
     * booleans, are ignored (logged).
     */
    mergeFlags(before, incoming) {
      const out = { ...(before || {}) };
      for (const [name, value] of Object.entries(incoming)) {
        if (!Object.prototype.hasOwnProperty.call(FLAG_DEFAULTS, name)) {
          this.log(`ignored the hub's flag ${JSON.stringify(name)}: not one this extension knows`);
        } else if (value === null) {
          delete out[name];
        } else if (typeof value === "boolean") {
          out[name] = value;
        } else {
          this.log(`ignored the hub's flag ${name}=${JSON.stringify(value)}: not true or false`);
        }
      }
      return out;
    }

    chatMode() {
      return (this.hubConfig && this.hubConfig.chat_mode) || this.settings.chatMode || "per_task";
    }

    paired() {
      return !!(this.settings.token && this.settings.hubUrl) && !this.settingsError;
    }

    /** Tabs open 2 s apart: a burst of page loads looks like a bot and spikes memory. */
    tabOpeningTurn() {
      const turn = this.tabTurn.then(async () => {
        const gap = this.timings && this.timings.tabOpenGapMs != null ? this.timings.tabOpenGapMs : TAB_OPEN_GAP_MS;
        const wait = this.lastTabOpenAt + gap - Date.now();
        if (wait > 0) await sleep(wait);
        this.lastTabOpenAt = Date.now();
      });
      this.tabTurn = turn.catch(() => {});
      return turn;
    }

    /**
     * Changes to the set of slots (start, stop, restart, a new tab count) run one after the
     * other: interleaved at their awaits, two of them could each create "slot 1", and two
     * connections of one worker id would replace each other at the hub forever.
     */
    serially(change) {
      const next = this.slotsChain.then(change, change);
      this.slotsChain = next.catch((err) => this.log(`slots: ${err && err.message ? err.message : err}`));
      return next;
    }

    start() {
      return this.serially(() => this.startSlots());
    }

    async startSlots() {
      const { inflight } = this.lib;
      const records = await this.store.loadAllSlots(10);
      for (const record of records) {
        if (record.tabId != null) this.tabToSlot.set(record.tabId, null);
      }
      if (!this.paired()) {
        this.publish();
        return;
      }
      // A table the hub pushed while selector_updates was on, left from before it went off.
      if (!this.flag("selector_updates")) await this.dropSelectorTable();
      const wanted = this.desiredTabs();
      const byNumber = new Map(records.map((r) => [r.slot, r]));
      for (let n = 1; n <= 10; n++) {
        const record = byNumber.get(n);
        const needed = n <= wanted || (record && (record.task || record.unacked.length));
        if (!needed) {
          if (record) await this.closeLeftover(record);
          continue;
        }
        const workerId = `ext-${this.installId}-${n}`;
        const slot = new Slot(this, n, record && record.workerId === workerId ? record : inflight.emptySlot(n, workerId));
        // Kept only for what it holds (fewer tabs were wanted before the restart): it finishes
        // that and closes.
        if (n > wanted) slot.draining = `closing this tab once its attempt is delivered: ${this.fewerTabsReason()}`;
        this.slots.set(n, slot);
        if (slot.tabId != null) this.tabToSlot.set(slot.tabId, slot);
      }
      // A snapshot: a `configure` arriving meanwhile may add slots, and starts them itself.
      for (const slot of [...this.slots.values()]) await slot.start();
      this.pruneReferences().catch((err) => this.log(`pruning reference images: ${err.message}`));
      this.publish();
    }

    async closeLeftover(record) {
      if (record.tabId != null) await this.chrome.tabs.remove(record.tabId).catch(() => {});
      await this.store.removeSlot(record.slot);
    }

    /** Settings changed on the options page: start over with them. */
    restart(settings) {
      return this.serially(async () => {
        await this.stopSlots("restart", "settings changed");
        this.settings = settings;
        this.stopped = false;
        await this.startSlots();
      });
    }

    stop(reason, detail, options) {
      return this.serially(() => this.stopSlots(reason, detail, options));
    }

    async stopSlots(reason, detail, { closeTabs = false } = {}) {
      this.stopped = true;
      const slots = [...this.slots.values()];
      for (const slot of slots) slot.retired = true; // late messages are ignored from now on
      // A tab being opened right now gets its id saved before the next generation reads it.
      await Promise.all(slots.map((slot) => slot.creatingTab));
      await Promise.all(slots.map((slot) => slot.chain));
      for (const slot of slots) {
        if (slot.conn) slot.conn.close(reason, detail);
        if (closeTabs && slot.tabId != null) {
          await this.chrome.tabs.remove(slot.tabId).catch(() => {});
        }
      }
      this.slots.clear();
    }

    adjustSlots() {
      return this.serially(() => this.adjustSlotsNow());
    }

    async adjustSlotsNow() {
      if (this.stopped || !this.paired()) return;
      const { inflight } = this.lib;
      const wanted = this.desiredTabs();
      for (let n = 1; n <= wanted; n++) {
        if (this.slots.has(n)) {
          this.slots.get(n).keep();
          continue;
        }
        const record = (await this.store.loadSlot(n)) || inflight.emptySlot(n, `ext-${this.installId}-${n}`);
        const slot = new Slot(this, n, record);
        this.slots.set(n, slot);
        slot.start();
      }
      // Never thrown away: a slot with an attempt in hand (perhaps paid for already) or an
      // outcome not yet acknowledged finishes and delivers it first (Slot.drain).
      for (const [n, slot] of [...this.slots]) {
        if (n <= wanted) continue;
        if (slot.idle) {
          this.slots.delete(n);
          await slot.retire(this.fewerTabsReason());
          await this.store.removeSlot(n);
          slot.log("closed");
        } else {
          slot.drain(this.fewerTabsReason());
        }
      }
      this.publish();
    }

    fewerTabsReason() {
      return this.flag("multi_tab") ? `${this.desiredTabs()} tab(s) wanted` : "single-tab mode (the hub's multi_tab flag is off)";
    }

    /**
     * `configure` from the hub (every slot's connection gets one: applied one at a time).
     * Absent fields leave what was in force; `flags` are merged by name (mergeFlags) and kept
     * with the rest in storage ("hubConfig"), so they outlive a service worker restart.
     */
    applyConfigure(msg) {
      const next = (this.configureChain || Promise.resolve()).then(() => this.applyConfigureNow(msg));
      this.configureChain = next.catch((err) => this.log(`configure: ${err && err.message ? err.message : err}`));
      return next;
    }

    async applyConfigureNow(msg) {
      const config = { ...(this.hubConfig || {}) };
      if (msg.tabs != null) config.tabs = msg.tabs;
      if (msg.chat_mode != null) config.chat_mode = msg.chat_mode;
      if (msg.flags && typeof msg.flags === "object" && !Array.isArray(msg.flags)) {
        config.flags = this.mergeFlags(config.flags, msg.flags);
      }
      const selectorUpdates = config.flags ? config.flags.selector_updates !== false : true;
      if (!selectorUpdates) {
        // Back to the built-in table, and the hub's tables are not looked at until the flag is on.
        await this.dropSelectorTable();
        delete config.selector_table;
        if (msg.selector_table) this.log("ignored the hub's selector table: the hub's selector_updates flag is off");
      } else if (msg.selector_table) {
        const result = await this.acceptSelectorTable(msg.selector_table);
        config.selector_table = result;
      }
      const changed = JSON.stringify(config) !== JSON.stringify(this.hubConfig || {});
      const flagsChanged = JSON.stringify(config.flags || {}) !== JSON.stringify((this.hubConfig && this.hubConfig.flags) || {});
      this.hubConfig = config;
      if (flagsChanged) this.log(`feature flags in force: ${describeFlags(this.flags())}`);
      if (changed) {
        await this.store.setValue("hubConfig", config);
        await this.adjustSlots();
      }
      this.publish();
    }

    /**
     * selector_updates off: forget the table the hub pushed (storage, which new pages read) and
     * tell the open pages to use the built-in table again (`ng.setSelectors` with table null).
     * Resolves true when there was one.
     */
    async dropSelectorTable() {
      this.selectorProblem = null;
      const current = await this.store.getValue("selectorTable");
      if (!current) return false;
      await this.store.removeValue("selectorTable");
      const tabs = new Set([...this.slots.values()].map((slot) => slot.tabId).filter((id) => id != null));
      for (const tabId of tabs) this.chrome.tabs.sendMessage(tabId, { type: "ng.setSelectors", table: null }).catch(() => {});
      this.log(`dropped the hub's selector table version ${current.version}: back to the built-in table`);
      return true;
    }

    /** A newer selector table from the hub: validated, stored for content scripts, pushed. */
    async acceptSelectorTable(text) {
      const tables = this.lib.selectorTable;
      let table;
      try {
        table = JSON.parse(text);
      } catch (err) {
        this.log(`the hub sent a selector table that is not JSON: ${err.message}`);
        this.selectorProblem = `selector table refused: not JSON (${err.message})`;
        return { accepted: false, error: err.message };
      }
      const errors = tables.validateTable(table);
      if (errors.length) {
        const detail = errors.map(describeTableError).join("; ");
        this.log(`refused the hub's selector table: ${detail}`);
        // The author sees it in the hub's worker status, not only in the extension's log.
        this.selectorProblem = `selector table version ${table && table.version} refused: ${detail}`;
        for (const slot of this.slots.values()) slot.sendStatus(true);
        return { accepted: false, error: detail };
      }
      this.selectorProblem = null;
      const current = await this.store.getValue("selectorTable");
      const currentVersion = Math.max((current && current.version) || 0, (tables.DEFAULT_TABLE && tables.DEFAULT_TABLE.version) || 0);
      if (table.version <= currentVersion && !(current && current.version === table.version)) {
        this.log(`kept selector table version ${currentVersion}; the hub's is ${table.version}`);
        return { accepted: false, version: table.version, error: "not newer" };
      }
      await this.store.setValue("selectorTable", table, { warm: false });
      for (const slot of this.slots.values()) {
        if (slot.tabId != null) this.chrome.tabs.sendMessage(slot.tabId, { type: "ng.setSelectors", table }).catch(() => {});
      }
      this.log(`using selector table version ${table.version}`);
      return { accepted: true, version: table.version };
    }

    async onHubBye(slot, msg) {
      slot.log(`the hub said bye (${msg.reason})`);
      if (msg.reason === "shutdown") {
        // Do not knock again at once: the app is going away (a restart takes seconds).
        if (slot.conn) slot.conn.failures = Math.max(slot.conn.failures, 4);
        // The desktop app is quitting: close this slot's tab cleanly; reconnect quietly and
        // reopen tabs when it is back.
        if (!slot.busy && slot.tabId != null) {
          this.tabToSlot.delete(slot.tabId);
          await this.chrome.tabs.remove(slot.tabId).catch(() => {});
          await slot.update((r) => ({ ...r, tabId: null }));
        }
      }
    }

    noteCooldown(until) {
      this.cooldownUntil = Math.max(this.cooldownUntil, until);
    }

    slotForTab(tabId) {
      return this.tabToSlot.get(tabId) || null;
    }

    async onContentMessage(msg, sender) {
      const tabId = sender && sender.tab ? sender.tab.id : null;
      const slot = tabId != null ? this.slotForTab(tabId) : null;
      if (!slot) {
        // Not one of our tabs (the author's own ChatGPT tab): never drive it.
        return { ignored: true };
      }
      switch (msg.type) {
        case "ng.ready":
          slot.onPageReady(msg);
          return { ok: true, slot: slot.n };
        case "ng.progress":
          await slot.onPageProgress(msg);
          return { ok: true };
        case "ng.done":
          return slot.onPageDone(msg);
        case "ng.reference":
          return this.readReference(msg.sha256);
        default:
          return { ok: false, error: `unknown message ${msg.type}` };
      }
    }

    async onTabRemoved(tabId) {
      const slot = this.slotForTab(tabId);
      if (slot) await slot.onTabGone("the tab was closed");
    }

    async onTabUpdated(tabId, changeInfo) {
      const slot = this.slotForTab(tabId);
      if (!slot) return;
      if (changeInfo.discarded) await slot.onTabDiscarded();
      if (changeInfo.url) slot.url = changeInfo.url;
    }

    async checkHealth() {
      for (const slot of this.slots.values()) await slot.checkHealth();
      this.publish();
    }

    async selfTest() {
      const slot = [...this.slots.values()].find((s) => s.tabId != null);
      let tabId = slot ? slot.tabId : null;
      if (tabId == null) {
        const tabs = await this.chrome.tabs.query({ url: "https://chatgpt.com/*" });
        tabId = tabs.length ? tabs[0].id : null;
      }
      if (tabId == null) return { ok: false, error: "no ChatGPT tab is open" };
      let result;
      try {
        result = await withTimeout(this.chrome.tabs.sendMessage(tabId, { type: "ng.selfTest" }), PING_TIMEOUT_MS, "self-test");
      } catch (err) {
        return { ok: false, error: `the ChatGPT tab did not answer the self-test: ${err.message}` };
      }
      if (!result || !result.results) return { ok: false, error: "the ChatGPT tab gave no self-test result" };
      const record = { ts: Date.now(), url: result.url, results: result.results };
      await this.store.setValue("selfTest", record, { warm: false });
      return { ok: true, ...record };
    }

    /** The connection status the options page shows (throttled). */
    publish() {
      if (this.publishTimer) return;
      this.publishTimer = setTimeout(() => {
        this.publishTimer = null;
        const status = this.connectionStatus();
        this.store.setValue("connection", status).catch(() => {});
        this.showBadge(status);
      }, 250);
    }

    /**
     * The toolbar badge: how many tabs are connected, "!" when a tab needs the author (login,
     * a challenge, an error), nothing when not paired. Visible without opening anything.
     */
    showBadge(status) {
      const action = this.chrome.action;
      if (!action || !action.setBadgeText) return;
      const open = status.slots.filter((s) => s.connection === "open").length;
      const attention = status.state === "error" || status.slots.some((s) => ["logged_out", "unresponsive", "crashed"].includes(s.health));
      const text = status.state === "unpaired" ? "" : attention ? "!" : status.state === "connected" ? String(open) : "off";
      const color = attention ? "#c62828" : status.state === "connected" ? "#2e7d32" : "#757575";
      action.setBadgeText({ text }).catch(() => {});
      action.setBadgeBackgroundColor({ color }).catch(() => {});
      action.setTitle({ title: `NovelGen Worker: ${status.state}${status.detail ? " — " + status.detail : ""}` }).catch(() => {});
    }

    connectionStatus() {
      const slots = [...this.slots.values()].map((s) => s.snapshot());
      let state = "disconnected";
      let detail = "";
      if (!this.paired()) {
        state = "unpaired";
        detail = "paste the pairing token from the desktop app, or open its pairing link";
      } else if (slots.some((s) => s.connection === "open")) state = "connected";
      else if (slots.some((s) => s.connection === "connecting")) state = "connecting";
      if (!detail) detail = slots.map((s) => s.detail).filter(Boolean)[0] || "";
      if (this.cooldownUntil > Date.now()) detail = `rate limited: cooling down until ${new Date(this.cooldownUntil).toLocaleTimeString()}` + (detail ? `; ${detail}` : "");
      if (this.settingsError) {
        state = "error";
        detail = this.settingsError;
      }
      if (state !== this.lastState) {
        this.lastState = state;
        this.stateSince = Date.now();
      }
      const fromHub = Object.keys((this.hubConfig && this.hubConfig.flags) || {});
      return { state, hub: this.settings.hubUrl, detail, since: this.stateSince, instance_id: this.instanceId, slots, flags: this.flags(), flags_from_hub: fromHub };
    }
  }

  return { Orchestrator, Slot, CHATGPT_URL, TAB_OPEN_GAP_MS, FLAG_DEFAULTS, sameUrl };
});
