/** Parses YAML with PyYAML, the parser cloud-init itself uses (YAML 1.1 rules). */
import { execFileSync } from 'node:child_process';

export function pyYamlLoad(text: string): unknown {
  const out = execFileSync('python3', ['-c', 'import sys, yaml, json; print(json.dumps(yaml.safe_load(sys.stdin.read()), default=str))'], { input: text, encoding: 'utf8' });
  return JSON.parse(out);
}
