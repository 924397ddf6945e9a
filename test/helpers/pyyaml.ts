/** Parses YAML with PyYAML, the parser cloud-init itself uses (YAML 1.1 rules). */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';

export function pyYamlLoad(text: string): unknown {
  const out = execFileSync(fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3', ['-c', 'import sys, yaml, json; print(json.dumps(yaml.safe_load(sys.stdin.read()), default=str))'], { input: text, encoding: 'utf8' });
  return JSON.parse(out);
}
