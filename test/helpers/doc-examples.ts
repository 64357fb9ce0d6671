// Reading the docs' examples: ```console blocks of `$ command` lines, each followed by what it prints.

export interface DocCommand {
  readonly command: string;
  readonly expected: string;
  /** Line of the page where the command starts (1-based). */
  readonly line: number;
}

/** The ```console blocks of a markdown page, as `$ ` commands and their outputs. */
export function consoleBlocks(markdown: string): { commands: DocCommand[]; line: number }[] {
  const lines = markdown.split('\n');
  const blocks: { commands: DocCommand[]; line: number }[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== '```console') continue;
    const start = i + 1;
    const commands: { command: string; out: string[]; line: number }[] = [];
    for (i++; i < lines.length && lines[i].trim() !== '```'; i++) {
      if (lines[i].startsWith('$ ')) {
        const line = i + 1;
        let command = lines[i].slice(2);
        // a trailing `\\` continues a command on the next line, and so does a line that starts with `> ` (the
        // shell's second prompt, for a quoted argument over several lines)
        for (;;) {
          if (command.endsWith('\\') && i + 1 < lines.length)
            command = `${command}\n${lines[++i]}`; // bash joins the lines
          else if (lines[i + 1]?.startsWith('> ')) command = `${command}\n${lines[++i].slice(2)}`;
          else break;
        }
        commands.push({ command, out: [], line });
      } else commands.at(-1)?.out.push(lines[i]);
    }
    blocks.push({
      commands: commands.map((c) => ({ command: c.command, expected: c.out.join('\n'), line: c.line })),
      line: start,
    });
  }
  return blocks;
}

/** Markdown links `[text](target)` of a page, outside code blocks. */
export function markdownLinks(markdown: string): { target: string; line: number }[] {
  const found: { target: string; line: number }[] = [];
  let inCode = false;
  markdown.split('\n').forEach((l, i) => {
    if (l.trimStart().startsWith('```')) inCode = !inCode;
    if (inCode) return;
    for (const m of l.replace(/`[^`]*`/g, '').matchAll(/\]\(([^)\s]+)\)/g)) found.push({ target: m[1], line: i + 1 });
  });
  return found;
}

/** The headings of a page (`#` lines outside code blocks), without their `#`s. */
export function markdownHeadings(markdown: string): string[] {
  let inCode = false;
  return markdown.split('\n').flatMap((l) => {
    if (l.trimStart().startsWith('```')) inCode = !inCode;
    const m = inCode ? null : /^#{1,6} (.*)$/.exec(l);
    return m ? [m[1]] : [];
  });
}

/** The anchor GitHub gives a heading. */
export function githubSlug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\- _]/gu, '')
    .replace(/ /g, '-');
}

const NUMBER = /^-?\d+(\.\d+)?([eE][+-]?\d+)?/;

/** JSON text with every number outside strings replaced by `{"$n": "<its text>"}`, so its precision survives parsing. */
function markNumbers(json: string): string {
  let out = '';
  let inString = false;
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (inString) {
      out += c;
      if (c === '\\') out += json[++i] ?? '';
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    if (json.startsWith('...', i)) {
      out += '{"$more":true}'; // the rest of a list, not shown
      i += 2;
      continue;
    }
    const m = /[-\d]/.test(c) ? NUMBER.exec(json.slice(i)) : null;
    if (m) {
      out += `{"$n":"${m[0]}"}`;
      i += m[0].length - 1;
    } else out += c;
  }
  return out;
}

/** Whether `actual` rounds to `shown` at the digits shown (integers exactly). */
function numberMatches(shown: string, actual: unknown): boolean {
  if (typeof actual !== 'number') return false;
  const [mantissa, exponent = '0'] = shown.toLowerCase().split('e');
  const decimals = mantissa.split('.')[1]?.length ?? 0;
  if (decimals === 0 && exponent === '0') return actual === Number(shown);
  const tolerance = 0.5 * 10 ** (Number(exponent) - decimals) * (1 + 1e-9);
  return Math.abs(actual - Number(shown)) <= tolerance;
}

function compareValues(shown: unknown, actual: unknown, at: string): string | undefined {
  if (shown && typeof shown === 'object' && !Array.isArray(shown) && Object.keys(shown).join() === '$n') {
    const n = (shown as { $n: string }).$n;
    return numberMatches(n, actual) ? undefined : `${at}: shown ${n}, got ${JSON.stringify(actual)}`;
  }
  if (Array.isArray(shown)) {
    const last = shown.at(-1) as { $more?: boolean } | undefined;
    if (last?.$more === true && Array.isArray(actual) && actual.length >= shown.length - 1)
      return compareValues(shown.slice(0, -1), actual.slice(0, shown.length - 1), at);
    if (!Array.isArray(actual) || actual.length !== shown.length)
      return `${at}: shown a list of ${shown.length}, got ${JSON.stringify(actual)?.slice(0, 200)}`;
    for (let i = 0; i < shown.length; i++) {
      const p = compareValues(shown[i], actual[i], `${at}[${i}]`);
      if (p) return p;
    }
    return undefined;
  }
  if (shown && typeof shown === 'object') {
    if (!actual || typeof actual !== 'object' || Array.isArray(actual)) return `${at}: shown an object`;
    const a = Object.keys(shown).sort().join();
    const b = Object.keys(actual).sort().join();
    if (a !== b) return `${at}: shown keys ${a}, got ${b}`;
    for (const k of Object.keys(shown)) {
      const p = compareValues(
        (shown as Record<string, unknown>)[k],
        (actual as Record<string, unknown>)[k],
        `${at}.${k}`,
      );
      if (p) return p;
    }
    return undefined;
  }
  return shown === actual ? undefined : `${at}: shown ${JSON.stringify(shown)}, got ${JSON.stringify(actual)}`;
}

/**
 * Why a command's output differs from what the page shows, or undefined when it does not. Shown JSON is compared
 * as JSON (key order free, numbers to the digits shown, `...` as the last item of a list standing for the rest of
 * it); anything else as text, surrounding blank space aside.
 */
export function compareOutput(shown: string, actual: string): string | undefined {
  const s = shown.trim();
  const a = actual.trim();
  if (s.startsWith('{') || s.startsWith('[')) {
    let got: unknown;
    try {
      got = JSON.parse(a);
    } catch {
      return `shown JSON, got: ${a.slice(0, 300)}`;
    }
    return compareValues(JSON.parse(markNumbers(s)), got, '$');
  }
  return s === a ? undefined : `shown:\n${s}\ngot:\n${a}`;
}
