"use strict";
/*
 * A tiny fake DOM for the selector-table tests: elements with attributes, children and text,
 * and a querySelectorAll that understands the CSS the selector table uses (type, #id, .class,
 * [attr], [attr="v"], [attr^="v"], [attr*="v"], [attr$="v"], descendant and child
 * combinators, selector lists). Anything else throws a SyntaxError, as a browser does for a
 * selector it cannot parse. No jsdom: the lib files only need querySelectorAll/textContent.
 */

const ATTRIBUTE = /^\[\s*([\w-]+)\s*(?:([\^*$]?=)\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|([\w-]+))\s*)?\]/;

function parseCompound(text) {
  const compound = { tag: null, id: null, classes: [], attributes: [] };
  let rest = text;
  const tag = /^(\*|[a-zA-Z][\w-]*)/.exec(rest);
  if (tag) {
    compound.tag = tag[1] === "*" ? null : tag[1].toLowerCase();
    rest = rest.slice(tag[0].length);
  }
  while (rest) {
    let match;
    if ((match = /^#([\w-]+)/.exec(rest))) compound.id = match[1];
    else if ((match = /^\.([\w-]+)/.exec(rest))) compound.classes.push(match[1]);
    else if ((match = ATTRIBUTE.exec(rest))) {
      const value = match[3] ?? match[4] ?? match[5];
      compound.attributes.push({ name: match[1], op: match[2] || null, value });
    } else throw new SyntaxError(`fake DOM: unsupported selector part ${JSON.stringify(rest)}`);
    rest = rest.slice(match[0].length);
  }
  return compound;
}

/** Splits on a separator outside brackets and quotes. */
function splitOutside(text, isSeparator) {
  const parts = [];
  let depth = 0;
  let quote = null;
  let current = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === quote) quote = null;
      current += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      current += c;
    } else if (c === "[" || c === "(") {
      depth++;
      current += c;
    } else if (c === "]" || c === ")") {
      depth--;
      current += c;
    } else if (depth === 0 && isSeparator(c)) {
      parts.push(current);
      current = "";
    } else current += c;
  }
  parts.push(current);
  return parts;
}

/** A complex selector as [{compound, combinator}] from left to right. */
function parseComplex(text) {
  const spaced = splitOutside(text.replace(/\s*>\s*/g, " > ").trim(), (c) => /\s/.test(c)).filter(Boolean);
  const steps = [];
  let combinator = " ";
  for (const token of spaced) {
    if (token === ">") {
      combinator = ">";
      continue;
    }
    steps.push({ compound: parseCompound(token), combinator });
    combinator = " ";
  }
  if (steps.length === 0) throw new SyntaxError(`fake DOM: empty selector ${JSON.stringify(text)}`);
  return steps;
}

function matchesCompound(element, compound) {
  if (compound.tag && element.tagName.toLowerCase() !== compound.tag) return false;
  if (compound.id && element.getAttribute("id") !== compound.id) return false;
  const classes = (element.getAttribute("class") || "").split(/\s+/);
  if (!compound.classes.every((name) => classes.includes(name))) return false;
  return compound.attributes.every(({ name, op, value }) => {
    const actual = element.getAttribute(name);
    if (actual === null) return false;
    if (!op) return true;
    if (op === "=") return actual === value;
    if (op === "^=") return value !== "" && actual.startsWith(value);
    if (op === "*=") return value !== "" && actual.includes(value);
    if (op === "$=") return value !== "" && actual.endsWith(value);
    return false;
  });
}

function matchesComplex(element, steps, scope) {
  let index = steps.length - 1;
  if (!matchesCompound(element, steps[index].compound)) return false;
  let current = element;
  while (index > 0) {
    const combinator = steps[index].combinator;
    index--;
    if (combinator === ">") {
      current = current.parentNode;
      if (!current || current === scope.parentNode || !current.tagName || !matchesCompound(current, steps[index].compound)) return false;
    } else {
      current = current.parentNode;
      while (current && current.tagName && !matchesCompound(current, steps[index].compound)) current = current.parentNode;
      if (!current || !current.tagName) return false;
    }
  }
  return true;
}

function parseSelectorList(css) {
  if (typeof css !== "string" || !css.trim()) throw new SyntaxError("fake DOM: empty selector");
  return splitOutside(css, (c) => c === ",").map((part) => parseComplex(part));
}

class FakeElement {
  constructor(tagName, attributes, children) {
    this.tagName = tagName.toUpperCase();
    this.attributes = Object.assign({}, attributes || {});
    this.childNodes = [];
    this.parentNode = null;
    this.ownText = "";
    this.clicks = 0;
    for (const child of children || []) this.append(child);
  }

  append(child) {
    if (typeof child === "string") {
      this.childNodes.push({ text: child });
    } else {
      child.parentNode = this;
      this.childNodes.push(child);
    }
    return this;
  }

  get children() {
    return this.childNodes.filter((node) => node instanceof FakeElement);
  }

  get textContent() {
    return this.childNodes.map((node) => (node instanceof FakeElement ? node.textContent : node.text)).join("");
  }

  getAttribute(name) {
    return Object.prototype.hasOwnProperty.call(this.attributes, name) ? String(this.attributes[name]) : null;
  }

  setAttribute(name, value) {
    this.attributes[name] = String(value);
  }

  get id() {
    return this.getAttribute("id") || "";
  }

  click() {
    this.clicks++;
  }

  remove() {
    if (!this.parentNode) return;
    this.parentNode.childNodes = this.parentNode.childNodes.filter((node) => node !== this);
    this.parentNode = null;
  }

  addEventListener(type, listener) {
    (this.listeners || (this.listeners = [])).push({ type, listener });
  }

  /** Runs this element's listeners, then its ancestors' when the event bubbles. */
  dispatchEvent(event) {
    (this.dispatched || (this.dispatched = [])).push(event);
    for (let node = this; node; node = event.bubbles ? node.parentNode : null) {
      for (const { type, listener } of node.listeners || []) if (type === event.type) listener.call(node, event);
    }
    return true;
  }

  descendants() {
    const all = [];
    const walk = (element) => {
      for (const child of element.children) {
        all.push(child);
        walk(child);
      }
    };
    walk(this);
    return all;
  }

  querySelectorAll(css) {
    const list = parseSelectorList(css);
    return this.descendants().filter((element) => list.some((steps) => matchesComplex(element, steps, this)));
  }

  querySelector(css) {
    return this.querySelectorAll(css)[0] || null;
  }

  matches(css) {
    return parseSelectorList(css).some((steps) => matchesComplex(this, steps, { parentNode: null }));
  }

  closest(css) {
    let current = this;
    while (current && current.tagName) {
      if (current.matches(css)) return current;
      current = current.parentNode;
    }
    return null;
  }
}

/** h("button", {"data-testid": "send-button"}, "Send", h(...)) */
function h(tagName, attributes, ...children) {
  return new FakeElement(tagName, attributes, children.flat());
}

/** A document-like root: querySelectorAll over its children. */
function fakeDocument(...children) {
  return h("html", {}, ...children);
}

module.exports = { FakeElement, h, fakeDocument };
