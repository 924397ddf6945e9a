/**
 * A small, strict XML 1.0 parser for tests: elements, attributes, text, comments, CDATA,
 * the XML declaration, the five predefined entities and character references. It throws
 * on anything not well-formed (mismatched or unclosed tags, duplicate or unquoted
 * attributes, a raw '<' or '&' in text or attributes, characters XML forbids, unknown
 * entities, more than one root), so a reporter's output that parses here is well-formed.
 */
export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  text: string;
}

const NAME = /^[A-Za-z_:][A-Za-z0-9_.:-]*/;

function checkChars(s: string, where: number): void {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) throw new Error(`lone surrogate at ${where + i}`);
      i++;
      continue;
    }
    if ((c < 0x20 && c !== 0x9 && c !== 0xa && c !== 0xd) || (c >= 0xdc00 && c <= 0xdfff) || c === 0xfffe || c === 0xffff) throw new Error(`forbidden character U+${c.toString(16)} at ${where + i}`);
  }
}

function decode(s: string, at: number): string {
  if (/<|&(?!(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/.test(s)) throw new Error(`raw '<' or bad entity near ${at}: ${JSON.stringify(s.slice(0, 60))}`);
  return s.replace(/&(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);/g, (_, e: string) => {
    if (e === 'amp') return '&';
    if (e === 'lt') return '<';
    if (e === 'gt') return '>';
    if (e === 'quot') return '"';
    if (e === 'apos') return "'";
    const code = e.startsWith('#x') ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
    const ch = String.fromCodePoint(code);
    checkChars(ch, at);
    return ch;
  });
}

export function parseXml(src: string): XmlElement {
  checkChars(src, 0);
  let i = 0;
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  const skipWs = (): void => {
    while (i < src.length && /\s/.test(src[i]!)) i++;
  };
  if (src.startsWith('<?xml')) {
    const end = src.indexOf('?>');
    if (end < 0) throw new Error('unterminated XML declaration');
    i = end + 2;
  }
  while (i < src.length) {
    if (src.startsWith('<!--', i)) {
      const end = src.indexOf('-->', i + 4);
      if (end < 0) throw new Error('unterminated comment');
      i = end + 3;
    } else if (src.startsWith('<![CDATA[', i)) {
      const end = src.indexOf(']]>', i);
      if (end < 0 || !stack.length) throw new Error('bad CDATA');
      stack[stack.length - 1]!.text += src.slice(i + 9, end);
      i = end + 3;
    } else if (src.startsWith('</', i)) {
      i += 2;
      const m = NAME.exec(src.slice(i));
      if (!m) throw new Error(`bad closing tag at ${i}`);
      i += m[0].length;
      skipWs();
      if (src[i] !== '>') throw new Error(`bad closing tag at ${i}`);
      i++;
      const open = stack.pop();
      if (!open || open.name !== m[0]) throw new Error(`mismatched </${m[0]}> (open: ${open?.name ?? 'none'})`);
    } else if (src[i] === '<') {
      i++;
      const m = NAME.exec(src.slice(i));
      if (!m) throw new Error(`bad tag at ${i}`);
      i += m[0].length;
      const el: XmlElement = { name: m[0], attrs: {}, children: [], text: '' };
      for (;;) {
        const before = i;
        skipWs();
        if (src.startsWith('/>', i) || src[i] === '>') break;
        if (i === before) throw new Error(`attributes need whitespace at ${i}`);
        const a = NAME.exec(src.slice(i));
        if (!a) throw new Error(`bad attribute at ${i}`);
        i += a[0].length;
        skipWs();
        if (src[i] !== '=') throw new Error(`attribute ${a[0]} without value at ${i}`);
        i++;
        skipWs();
        const q = src[i];
        if (q !== '"' && q !== "'") throw new Error(`unquoted attribute ${a[0]} at ${i}`);
        const end = src.indexOf(q, i + 1);
        if (end < 0) throw new Error('unterminated attribute');
        if (a[0] in el.attrs) throw new Error(`duplicate attribute ${a[0]}`);
        el.attrs[a[0]] = decode(src.slice(i + 1, end), i);
        i = end + 1;
      }
      if (stack.length) stack[stack.length - 1]!.children.push(el);
      else if (root) throw new Error('more than one root element');
      else root = el;
      if (src.startsWith('/>', i)) i += 2;
      else {
        i++;
        stack.push(el);
      }
    } else {
      const end = src.indexOf('<', i);
      const text = src.slice(i, end < 0 ? src.length : end);
      if (!stack.length) {
        if (text.trim()) throw new Error(`text outside the root: ${JSON.stringify(text.slice(0, 40))}`);
      } else stack[stack.length - 1]!.text += decode(text, i);
      i = end < 0 ? src.length : end;
    }
  }
  if (stack.length) throw new Error(`unclosed <${stack[stack.length - 1]!.name}>`);
  if (!root) throw new Error('no root element');
  return root;
}

/** Every element named `name` under `el` (depth first). */
export function findAll(el: XmlElement, name: string): XmlElement[] {
  const out: XmlElement[] = [];
  const walk = (e: XmlElement): void => {
    if (e.name === name) out.push(e);
    e.children.forEach(walk);
  };
  walk(el);
  return out;
}
