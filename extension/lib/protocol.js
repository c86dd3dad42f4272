// The hub protocol, version 1, as the extension speaks it (docs/protocol.md is the spec).
// Pure: message builders, the binary image frame, light checks of what the hub sends.
(function (root, factory) {
  const api = factory();
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.NovelGenProtocol = api;
})(globalThis, function () {
  "use strict";

  const VERSION = 1;
  const AGENT = "novelgen-extension/0.1.0";
  const MAX_TEXT = 4096; // message/detail fields
  const MAX_HOLDING = 64;
  const TASK_ERROR_KINDS = ["rate_limited", "refused", "timeout", "page_error", "network", "login_required"];
  const STAGES = ["accepted", "typing", "submitted", "generating", "downloading"];
  const TAB_HEALTH = ["ok", "loading", "unresponsive", "crashed", "discarded", "logged_out"];
  const MIMES = ["image/png", "image/jpeg", "image/webp"];
  /** What `cleanup` may ask of a tab (the hub sends it only to workers listing "cleanup"). */
  const CLEANUP_ACTIONS = ["reload_tab", "new_chat", "drop_images"];
  const CAPABILITIES = ["binary_frames", "image_png", "image_jpeg", "image_webp", "cleanup", "references"];
  /** reference_image limits (the hub's MAX_REFERENCE_BYTES, MAX_REFERENCES). */
  const MAX_REFERENCE_BYTES = 8 * 2 ** 20;
  const MAX_REFERENCES = 8;
  const MAX_REFERENCE_BASE64 = 4 * Math.ceil(MAX_REFERENCE_BYTES / 3);
  const SHA256_PATTERN = /^[0-9a-f]{64}$/;
  // A file name: no path separator, no control character (1–255 characters: validFileName).
  const FILE_NAME_PATTERN = /^[^\/\\\x00-\x1f]+$/;
  const BASE64_PATTERN = /^[A-Za-z0-9+/]*={0,2}$/;
  const MAX_BYTES_FIGURE = 2 ** 48; // heap_before/heap_after/freed_bytes bound
  const MAX_TURNS = 1e9;
  const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;
  const TASK_PATTERN = /^(0|[1-9][0-9]{0,15})$/;
  const URL_PATTERN = /^https?:\/\/\S+$/;

  function clip(text, max = MAX_TEXT) {
    const s = String(text == null ? "" : text);
    if (s.length <= max) return s;
    let cut = s.slice(0, max - 1);
    // Never leave half of a surrogate pair: the hub refuses lone surrogates (bad_field).
    if (/[\uD800-\uDBFF]$/.test(cut)) cut = cut.slice(0, -1);
    return cut + "…";
  }

  function frame(type, fields) {
    const out = { v: VERSION, type };
    for (const [key, value] of Object.entries(fields)) {
      if (value !== undefined && value !== null) out[key] = value; // senders omit optionals
    }
    return out;
  }

  /** 1–255 characters counted as the hub counts them (code points), no '/', '\\' or control. */
  function validFileName(name) {
    if (typeof name !== "string" || !FILE_NAME_PATTERN.test(name)) return false;
    const length = [...name].length;
    return length >= 1 && length <= 255;
  }

  /** Errors of one `{sha256, name, mime}` (an assign's reference, or a reference_image). */
  function referenceProblem(ref) {
    if (!ref || typeof ref !== "object" || Array.isArray(ref)) return "not an object";
    if (typeof ref.sha256 !== "string" || !SHA256_PATTERN.test(ref.sha256)) return "bad sha256 (64 lowercase hex digits)";
    if (!validFileName(ref.name)) return "bad name (1-255 characters, no '/', '\\' or control characters)";
    if (!MIMES.includes(ref.mime)) return `bad mime ${JSON.stringify(ref.mime)}`;
    return null;
  }

  function validUrl(url) {
    return typeof url === "string" && url.length <= 2048 && URL_PATTERN.test(url) ? url : undefined;
  }

  /** A worker id safe for the wire, made of parts that may not be (profile names). */
  function safeId(text, fallback) {
    const cleaned = String(text || "").replace(/[^A-Za-z0-9._:@-]/g, "-").replace(/^[^A-Za-z0-9]+/, "");
    const id = cleaned.slice(0, 128);
    return ID_PATTERN.test(id) ? id : fallback;
  }

  function hello({ token, workerId, accountId, tabId, instanceId, holding, agent }) {
    return frame("hello", {
      token,
      role: "worker",
      versions: [VERSION],
      agent: clip(agent || AGENT, 200),
      worker_id: workerId,
      account_id: accountId,
      kind: "extension",
      tab_id: tabId != null ? String(tabId).slice(0, 32) : undefined,
      capabilities: CAPABILITIES.slice(),
      instance_id: instanceId,
      holding: (holding || []).slice(0, MAX_HOLDING).map((h) => ({ task_id: String(h.task_id), attempt: h.attempt })),
    });
  }

  function heartbeat(seq) {
    return frame("heartbeat", { ts: Date.now() / 1000, seq });
  }

  function bye(reason, detail) {
    return frame("bye", { reason, detail: detail ? clip(detail) : undefined });
  }

  function progress({ task_id, attempt, stage, percent, conversation_url, detail }) {
    if (!STAGES.includes(stage)) throw new Error(`progress: unknown stage ${stage}`);
    return frame("progress", {
      task_id,
      attempt,
      stage,
      percent: typeof percent === "number" ? Math.max(0, Math.min(100, percent)) : undefined,
      conversation_url: validUrl(conversation_url),
      detail: detail ? clip(detail) : undefined,
    });
  }

  function byteFigure(n) {
    return Number.isFinite(n) && n >= 0 ? Math.min(MAX_BYTES_FIGURE, Math.round(n)) : undefined;
  }

  function status({ health, busy, memoryBytes, taskId, url, detail, conversationTurns }) {
    if (!TAB_HEALTH.includes(health)) throw new Error(`status: unknown tab health ${health}`);
    return frame("status", {
      ts: Date.now() / 1000,
      tab_health: health,
      busy: !!busy,
      memory_bytes: Number.isInteger(memoryBytes) && memoryBytes >= 0 ? memoryBytes : undefined,
      task_id: taskId,
      url: validUrl(url),
      detail: detail ? clip(detail) : undefined,
      conversation_turns:
        Number.isInteger(conversationTurns) && conversationTurns >= 0 ? Math.min(MAX_TURNS, conversationTurns) : undefined,
    });
  }

  /** The one answer to a `cleanup` (`re` is its request_id). */
  function cleanupDone({ re, action, ok, heapBefore, heapAfter, freedBytes, detail }) {
    if (typeof re !== "string" || !ID_PATTERN.test(re)) throw new Error(`cleanup_done: bad re ${re}`);
    return frame("cleanup_done", {
      re,
      action,
      ok: !!ok,
      heap_before: byteFigure(heapBefore),
      heap_after: byteFigure(heapAfter),
      freed_bytes: byteFigure(freedBytes),
      detail: detail ? clip(detail) : undefined,
    });
  }

  /** The `result` announcing an image; the binary frame must follow it at once. */
  function resultAnnouncement(meta) {
    const dims = (n) => (Number.isInteger(n) && n >= 1 && n <= 65535 ? n : undefined);
    return frame("result", {
      task_id: meta.task_id,
      attempt: meta.attempt,
      sha256: meta.sha256,
      size: meta.size,
      mime: MIMES.includes(meta.mime) ? meta.mime : "image/png",
      encoding: "binary",
      conversation_url: validUrl(meta.conversation_url),
      image_id: meta.image_id ? clip(meta.image_id, 256) : undefined,
      width: dims(meta.width),
      height: dims(meta.height),
      elapsed: typeof meta.elapsed === "number" ? Math.max(0, Math.min(604800, meta.elapsed)) : undefined,
    });
  }

  function taskError({ task_id, attempt, kind, message, retry_after, conversation_url }) {
    if (!TASK_ERROR_KINDS.includes(kind)) throw new Error(`task_error: unknown kind ${kind}`);
    let text = clip(message || "");
    if (kind === "refused" && !text.trim()) text = "ChatGPT refused the prompt";
    return frame("task_error", {
      task_id,
      attempt,
      kind,
      message: text,
      retry_after:
        kind === "rate_limited" && typeof retry_after === "number" && retry_after >= 0
          ? Math.min(604800, retry_after)
          : undefined,
      conversation_url: validUrl(conversation_url),
    });
  }

  /** NGI1 | attempt (u32 BE) | n | task id (ASCII) | image bytes. */
  function imageFrame(taskId, attempt, bytes) {
    const id = String(taskId);
    if (!TASK_PATTERN.test(id)) throw new Error(`image frame: bad task id ${id}`);
    const out = new Uint8Array(9 + id.length + bytes.length);
    out.set([0x4e, 0x47, 0x49, 0x31], 0);
    new DataView(out.buffer).setUint32(4, attempt >>> 0, false);
    out[8] = id.length;
    for (let i = 0; i < id.length; i++) out[9 + i] = id.charCodeAt(i);
    out.set(bytes, 9 + id.length);
    return out;
  }

  /**
   * Parse and check a frame from the hub. Returns the message, or throws an Error that says
   * what is wrong (the caller logs it and answers nothing: the hub is trusted but may be newer).
   */
  function parse(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (err) {
      throw new Error(`not JSON: ${err.message}`);
    }
    if (!msg || typeof msg !== "object" || Array.isArray(msg)) throw new Error("not a JSON object");
    if (msg.v !== VERSION) throw new Error(`protocol version ${msg.v}, expected ${VERSION}`);
    if (typeof msg.type !== "string") throw new Error("no message type");
    if (msg.type === "assign") {
      if (!TASK_PATTERN.test(msg.task_id || "")) throw new Error("assign: bad task_id");
      if (!Number.isInteger(msg.attempt) || msg.attempt < 1) throw new Error("assign: bad attempt");
      if (typeof msg.prompt !== "string" || !msg.prompt) throw new Error("assign: empty prompt");
      if (msg.metadata != null && (typeof msg.metadata !== "object" || Array.isArray(msg.metadata))) throw new Error("assign: metadata is not an object");
      if (msg.references != null) {
        if (!Array.isArray(msg.references)) throw new Error("assign: references is not an array");
        if (msg.references.length > MAX_REFERENCES) throw new Error(`assign: more than ${MAX_REFERENCES} references`);
        msg.references.forEach((ref, i) => {
          const problem = referenceProblem(ref);
          if (problem) throw new Error(`assign: references[${i}]: ${problem}`);
        });
      }
    } else if (msg.type === "reference_image") {
      // Checked here as far as the text goes; the decoded bytes' size and sha256 are checked
      // by the receiver (checkReference), which keeps nothing that does not match.
      const problem = referenceProblem(msg);
      if (problem) throw new Error(`reference_image: ${problem}`);
      if (!Number.isInteger(msg.size) || msg.size < 1 || msg.size > MAX_REFERENCE_BYTES) throw new Error("reference_image: bad size");
      const data = msg.data;
      if (typeof data !== "string" || data.length < 4 || data.length > MAX_REFERENCE_BASE64 || data.length % 4 !== 0 || !BASE64_PATTERN.test(data)) {
        throw new Error("reference_image: data is not standard base64 of at most 8 MiB");
      }
    } else if (msg.type === "cleanup") {
      // Without a readable request_id no answer is possible; an action this version does not
      // know is let through and answered `ok: false` (the hub may be newer).
      if (typeof msg.request_id !== "string" || !ID_PATTERN.test(msg.request_id)) throw new Error("cleanup: bad request_id");
      if (typeof msg.action !== "string" || !/^[a-z_]{1,64}$/.test(msg.action)) throw new Error("cleanup: bad action");
      if (msg.reason != null && typeof msg.reason !== "string") delete msg.reason; // only for the log
    }
    return msg;
  }

  /**
   * Decode a parsed reference_image and check it: the decoded bytes must be `size` long and
   * hash to `sha256`. Resolves to {ok: true, bytes} or {ok: false, error}.
   */
  async function checkReference(msg) {
    let bytes;
    try {
      bytes = base64ToBytes(msg.data);
    } catch (err) {
      return { ok: false, error: `reference_image ${msg.sha256}: data is not base64 (${err.message})` };
    }
    if (bytes.length !== msg.size) {
      return { ok: false, error: `reference_image ${msg.sha256}: ${bytes.length} bytes decoded, size says ${msg.size}` };
    }
    const digest = await sha256Hex(bytes);
    if (digest !== msg.sha256) return { ok: false, error: `reference_image ${msg.sha256}: the bytes hash to ${digest}` };
    return { ok: true, bytes };
  }

  function bytesToBase64(bytes) {
    let binary = "";
    const chunk = 0x8000;
    for (let i = 0; i < bytes.length; i += chunk) {
      binary += String.fromCharCode.apply(null, bytes.subarray(i, i + chunk));
    }
    return btoa(binary);
  }

  function base64ToBytes(text) {
    const binary = atob(text);
    const out = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
    return out;
  }

  async function sha256Hex(bytes) {
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  /** Image type from the bytes themselves (the page's Content-Type may lie). */
  function sniffMime(bytes) {
    if (bytes.length >= 8 && bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47) return "image/png";
    if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return "image/jpeg";
    if (bytes.length >= 12 && String.fromCharCode(...bytes.subarray(0, 4)) === "RIFF" && String.fromCharCode(...bytes.subarray(8, 12)) === "WEBP") return "image/webp";
    return null;
  }

  return {
    VERSION,
    AGENT,
    TASK_ERROR_KINDS,
    TAB_HEALTH,
    CLEANUP_ACTIONS,
    CAPABILITIES,
    MAX_REFERENCE_BYTES,
    MAX_REFERENCES,
    SHA256_PATTERN,
    ID_PATTERN,
    TASK_PATTERN,
    clip,
    safeId,
    hello,
    heartbeat,
    bye,
    progress,
    status,
    cleanupDone,
    resultAnnouncement,
    taskError,
    imageFrame,
    parse,
    validFileName,
    checkReference,
    bytesToBase64,
    base64ToBytes,
    sha256Hex,
    sniffMime,
  };
});
