/**
 * A tiny XML builder for libvirt documents: elements are built as data and serialised here,
 * the only place that writes XML text. Every attribute value and text node is escaped; element
 * and attribute names are checked against a conservative name pattern; characters XML 1.0
 * cannot carry at all (C0 controls other than tab/newline/CR, lone surrogates, U+FFFE/U+FFFF)
 * are refused rather than silently dropped. Pure: no I/O.
 */
import { FlotillaError } from '../../errors';

export type XmlAttrValue = string | number | boolean | undefined;

export interface XmlElement {
  name: string;
  attrs: Record<string, XmlAttrValue>;
  children: XmlNode[];
}

/** An element, or a text node (a string). */
export type XmlNode = XmlElement | string;

/** Children given to `el`: nodes, or undefined/false/arrays (skipped/flattened) for conditional parts. */
export type XmlChild = XmlNode | undefined | false | null | readonly XmlChild[];

const NAME = /^[A-Za-z_][A-Za-z0-9_.-]*(:[A-Za-z_][A-Za-z0-9_.-]*)?$/;

/** Builds an element; attributes whose value is undefined are left out. */
export function el(name: string, attrs: Record<string, XmlAttrValue> = {}, ...children: XmlChild[]): XmlElement {
  if (!NAME.test(name)) throw new FlotillaError('internal', `not an XML element name: ${JSON.stringify(name)}`);
  for (const a of Object.keys(attrs)) {
    if (!NAME.test(a)) throw new FlotillaError('internal', `not an XML attribute name: ${JSON.stringify(a)}`);
  }
  const out: XmlNode[] = [];
  const add = (c: XmlChild): void => {
    if (c === undefined || c === null || c === false) return;
    if (Array.isArray(c)) (c as readonly XmlChild[]).forEach(add);
    else out.push(c as XmlNode);
  };
  children.forEach(add);
  return { name, attrs, children: out };
}

/** An element holding only text: `<name>text</name>`. */
export function textEl(name: string, text: string | number, attrs: Record<string, XmlAttrValue> = {}): XmlElement {
  return el(name, attrs, String(text));
}

/**
 * Characters XML 1.0 has no way to represent (not even as a character reference): C0 controls
 * except tab, LF and CR; lone surrogates; U+FFFE and U+FFFF.
 */
// eslint-disable-next-line no-control-regex
const NOT_XML = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function checkChars(value: string, where: string): void {
  const m = NOT_XML.exec(value);
  if (m) {
    throw new FlotillaError(
      'invalid-input',
      `${where}: character U+${m[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')} at offset ${m.index} cannot be represented in XML`,
    );
  }
}

/** Escapes text content: `&`, `<`, `>`; CR as a character reference so parsers do not normalise it away. */
export function escapeText(value: string, where = 'XML text'): string {
  checkChars(value, where);
  return value.replace(/[&<>\r]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : '&#13;'));
}

/** Escapes an attribute value (single- or double-quoted); tab, LF and CR as references, since parsers normalise them to spaces. */
export function escapeAttr(value: string, where = 'XML attribute'): string {
  checkChars(value, where);
  return value.replace(/[&<>"'\t\n\r]/g, (c) => `&#${c.charCodeAt(0)};`);
}

function attrText(v: XmlAttrValue): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new FlotillaError('internal', `non-finite number in XML attribute: ${v}`);
    return String(v);
  }
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  return v;
}

function write(node: XmlNode, depth: number, indent: string, out: string[]): void {
  if (typeof node === 'string') {
    out.push(escapeText(node));
    return;
  }
  const pad = indent ? `\n${indent.repeat(depth)}` : '';
  let open = `<${node.name}`;
  for (const [k, v] of Object.entries(node.attrs)) {
    const s = attrText(v);
    if (s !== undefined) open += ` ${k}="${escapeAttr(s, `<${node.name} ${k}>`)}"`;
  }
  if (node.children.length === 0) {
    out.push(`${depth > 0 ? pad : ''}${open}/>`);
    return;
  }
  const onlyText = node.children.every((c) => typeof c === 'string');
  out.push(`${depth > 0 ? pad : ''}${open}>`);
  for (const c of node.children) {
    if (typeof c === 'string') out.push(escapeText(c, `<${node.name}> text`));
    else write(c, depth + 1, indent, out);
  }
  out.push(`${onlyText || !indent ? '' : pad}</${node.name}>`);
}

/** Serialises an element tree; `indent` '' gives one line. Ends with a newline. */
export function serializeXml(root: XmlElement, indent = '  '): string {
  const out: string[] = [];
  write(root, 0, indent, out);
  return `${out.join('')}\n`;
}
