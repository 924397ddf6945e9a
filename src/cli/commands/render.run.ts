/** `flotilla render`: the implementation, loaded when the command runs (declaration: render.ts). */
import { FlotillaError } from '../../errors';
import { loadSpecFile } from '../../config/load';
import { planRender, validateRendered } from '../../config/output';
import { renderCluster } from '../../config/render';
import { ensureSecrets, readSecrets, writeSecrets } from '../../config/secrets';
import { CONFIG_FORMATS } from '../../config/spec';
import { writeFilesAtomic } from '../../util/fs';
import { choiceOpt, stringOpt, type CommandRun } from '../command';
import { EXIT_OK } from '../exit-codes';
import { table } from '../format';

export const run: CommandRun = async (p, io) => {
  const specFile = stringOpt(p, 'spec', 'render', true);
  const spec = loadSpecFile(specFile);
  const format = choiceOpt(p, 'format', 'render', CONFIG_FORMATS);
  const nodes = p.values.node as string[] | undefined;
  const outDir = stringOpt(p, 'out', 'render');
  if (!outDir) {
    if (!nodes || nodes.length !== 1) throw new FlotillaError('usage', 'flotilla render: give --out DIR, or --node NAME to print one node');
    const secretsFile = stringOpt(p, 'secrets', 'render');
    const secrets = ensureSecrets(spec, secretsFile ? readSecrets(secretsFile) : undefined);
    const [rendered] = renderCluster(spec, secrets, { nodes, ...(format ? { format } : {}) });
    if (p.values.validate) validateRendered(rendered!);
    if (secretsFile) writeSecrets(secretsFile, secrets);
    else io.err('flotilla render: no --secrets FILE given; the host key in this output is not saved anywhere\n');
    io.out(rendered!.userData);
    return EXIT_OK;
  }
  const secretsFile = stringOpt(p, 'secrets', 'render');
  const plan = planRender(spec, { outDir, ...(nodes ? { nodes } : {}), ...(format ? { format } : {}), ...(secretsFile ? { secretsFile } : {}), validate: Boolean(p.values.validate) });
  writeFilesAtomic(plan.files);
  if (p.values.json) {
    io.out(`${JSON.stringify({ cluster: spec.name, outDir, nodes: plan.reports }, null, 2)}\n`);
    return EXIT_OK;
  }
  io.out(
    table(
      ['NODE', 'FORMAT', 'BYTES', 'USER-DATA', 'ENCODING', 'VALIDATED BY'],
      plan.reports.map((r) => [r.node, r.format, String(r.renderedBytes), String(r.userDataBytes), r.encoding, r.validatedBy?.join(', ') ?? '-']),
    ),
  );
  io.out(`\nWrote ${plan.files.length} files to ${outDir} (secrets.json is mode 0600: it holds the nodes' private host keys).\n`);
  return EXIT_OK;
};
