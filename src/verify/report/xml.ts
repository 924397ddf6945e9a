/** XML text and attribute escaping that always yields well-formed XML 1.0. */

/**
 * Characters XML 1.0 forbids (C0 controls except tab/newline/CR, lone surrogates,
 * U+FFFE/U+FFFF) cannot be escaped at all, not even as &#...; they are shown as `\xNN` /
 * `\uNNNN` text so that an ANSI escape in a command's output stays visible.
 */
function visible(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        out += s[i]! + s[i + 1]!;
        i++;
        continue;
      }
    }
    const bad = (c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) || (c >= 0xd800 && c <= 0xdfff) || c === 0xfffe || c === 0xffff;
    out += bad ? (c < 0x100 ? `\\x${c.toString(16).padStart(2, '0')}` : `\\u${c.toString(16).padStart(4, '0')}`) : s[i]!;
  }
  return out;
}

export function escapeText(s: string): string {
  return visible(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** For double-quoted attributes; newlines and tabs become character references so they survive normalisation. */
export function escapeAttr(s: string): string {
  return escapeText(s).replace(/"/g, '&quot;').replace(/\n/g, '&#10;').replace(/\r/g, '&#13;').replace(/\t/g, '&#9;');
}
