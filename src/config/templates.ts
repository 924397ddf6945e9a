/**
 * Handlebars templates for first-boot documents. Values go in only through the `json`
 * helper (JSON is a subset of YAML 1.2), never raw: `compileTemplate` rejects a template
 * that inserts anything else, so a value with quotes, colons, newlines or `{{` cannot
 * break the document or inject into it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import Handlebars from 'handlebars';
import { FlotillaError } from '../errors';
import { dataUrl } from './ignition-types';

export type TemplateName = 'cloud-config.yaml' | 'ignition.json' | 'network-config.yaml';

export const BUILTIN_TEMPLATES_DIR = path.resolve(__dirname, '..', '..', 'templates');

/** An isolated Handlebars environment: users' templates cannot register helpers into ours. */
const hbs = Handlebars.create();
/** Insert a value as JSON; the only way a value reaches the output. */
hbs.registerHelper('json', (value: unknown) => {
  if (value === undefined) throw new Error('json helper: value is undefined (a missing field?)');
  return JSON.stringify(value);
});
/** A data: URL for Ignition file contents; use inside json: {{json (dataurl contents)}}. */
hbs.registerHelper('dataurl', (value: unknown) => dataUrl(String(value)));

const VALUE_HELPERS = new Set(['json']);
const SUBEXPRESSION_HELPERS = new Set(['dataurl']);
const BLOCK_HELPERS = new Set(['each', 'if', 'unless', 'with']);

type AstNode = { type: string; loc?: { start: { line: number; column: number } }; [k: string]: unknown };

/** Returns problems: raw insertions, unknown helpers, partials. */
function lint(ast: AstNode, file: string): string[] {
  const problems: string[] = [];
  const at = (n: AstNode) => `${file}:${n.loc?.start.line ?? '?'}:${(n.loc?.start.column ?? 0) + 1}`;
  const visit = (n: unknown): void => {
    if (!n || typeof n !== 'object') return;
    if (Array.isArray(n)) return n.forEach(visit);
    const node = n as AstNode;
    switch (node.type) {
      case 'MustacheStatement': {
        const name = (node.path as { original?: string }).original;
        if (node.escaped === false) problems.push(`${at(node)}: triple-stash {{{...}}} inserts raw text; use {{json value}}`);
        else if (!name || !VALUE_HELPERS.has(name) || (node.params as unknown[]).length !== 1) {
          problems.push(`${at(node)}: "{{${name ?? '?'}}}" inserts a value without the json helper; write {{json ${name ?? 'value'}}}`);
        }
        break;
      }
      case 'SubExpression': {
        const name = (node.path as { original?: string }).original;
        if (!name || !SUBEXPRESSION_HELPERS.has(name)) problems.push(`${at(node)}: unknown helper "${name}" (available: ${[...SUBEXPRESSION_HELPERS].join(', ')})`);
        break;
      }
      case 'BlockStatement': {
        const name = (node.path as { original?: string }).original;
        if (!name || !BLOCK_HELPERS.has(name)) problems.push(`${at(node)}: unknown block helper "${name}" (available: ${[...BLOCK_HELPERS].join(', ')})`);
        break;
      }
      case 'PartialStatement':
      case 'PartialBlockStatement':
      case 'DecoratorBlock':
      case 'Decorator':
        problems.push(`${at(node)}: partials and decorators are not supported`);
        break;
      default:
        break;
    }
    for (const [k, v] of Object.entries(node)) if (k !== 'loc' && typeof v === 'object') visit(v);
  };
  visit(ast);
  return problems;
}

export type CompiledTemplate = (context: object) => string;

export function compileTemplate(source: string, file: string): CompiledTemplate {
  let ast: AstNode;
  try {
    ast = hbs.parse(source) as unknown as AstNode;
  } catch (err) {
    throw new FlotillaError('invalid-input', `${file}: template syntax error: ${(err as Error).message.split('\n')[0]}`);
  }
  const problems = lint(ast, file);
  if (problems.length > 0) {
    throw new FlotillaError('invalid-input', `${file}: unsafe template\n${problems.map((p) => `  ${p}`).join('\n')}`, problems.map((message) => ({ path: '', message, file })));
  }
  const fn = hbs.compile(ast as unknown as hbs.AST.Program, { noEscape: true, strict: true, knownHelpersOnly: true, knownHelpers: { json: true, dataurl: true } });
  return (context) => {
    try {
      return fn(context);
    } catch (err) {
      throw new FlotillaError('invalid-input', `${file}: template failed: ${(err as Error).message}`);
    }
  };
}

const cache = new Map<string, { mtimeMs: number; fn: CompiledTemplate }>();

/** The user's template from `userDir` when it has one, else the built-in. */
export function loadTemplate(name: TemplateName, userDir?: string): CompiledTemplate {
  const candidates = [...(userDir ? [path.join(userDir, `${name}.hbs`)] : []), path.join(BUILTIN_TEMPLATES_DIR, `${name}.hbs`)];
  for (const file of candidates) {
    let st: fs.Stats;
    try {
      st = fs.statSync(file);
    } catch {
      continue;
    }
    const hit = cache.get(file);
    if (hit && hit.mtimeMs === st.mtimeMs) return hit.fn;
    const fn = compileTemplate(fs.readFileSync(file, 'utf8'), file);
    cache.set(file, { mtimeMs: st.mtimeMs, fn });
    return fn;
  }
  throw new FlotillaError('not-found', `template ${name}.hbs not found in ${candidates.join(' or ')}`);
}
